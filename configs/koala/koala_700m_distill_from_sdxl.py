# KOALA-700M: KOALA-1B's layout at depth 5 without the mid block.
_base_ = './koala_1b_distill_from_sdxl.py'
model = dict(compression=dict(type='KOALA700M'))
