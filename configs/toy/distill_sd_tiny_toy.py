_base_ = './distill_sd_small_toy.py'
model = dict(compression=dict(type='SegmindTiny'), features='bk_sdm')
