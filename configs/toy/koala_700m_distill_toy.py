_base_ = './koala_1b_distill_toy.py'
model = dict(compression=dict(type='KOALA700M'))
