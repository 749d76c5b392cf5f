_base_ = './ssd_1b_distill_toy.py'
model = dict(compression=dict(type='SegmindVega'))
