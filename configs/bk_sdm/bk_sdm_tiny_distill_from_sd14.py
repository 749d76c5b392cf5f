# BK-SDM-Tiny from SD-1.4.
_base_ = './bk_sdm_base_distill_from_sd14.py'
model = dict(compression=dict(type='BKSDMTiny'))
