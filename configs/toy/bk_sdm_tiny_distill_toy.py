_base_ = './bk_sdm_base_distill_toy.py'
model = dict(compression=dict(type='BKSDMTiny'))
