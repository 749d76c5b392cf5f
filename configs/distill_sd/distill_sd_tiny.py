# Segmind tiny-sd: small-sd without the mid block and the innermost stage.
_base_ = './distill_sd_small.py'
model = dict(compression=dict(type='SegmindTiny'), features='bk_sdm')
