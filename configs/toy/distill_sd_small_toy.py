_base_ = './bk_sdm_base_distill_toy.py'
model = dict(
    compression=dict(type='SegmindSmall'),
    features='blocks',
    loss_weights=dict(task=1.0, output=0.5, feature=0.5))
