# Segmind small-sd: Realistic Vision 4.0 teacher, block-level KD on every
# stage including the mid block (segmind/distill-sd distill_training.py),
# lambda_out = lambda_feat = 0.5 (Segmind blog).
_base_ = '../bk_sdm/bk_sdm_base_distill_from_sd14.py'
base_model = 'SG161222/Realistic_Vision_V4.0'
model = dict(
    student=dict(model=base_model),
    teacher=dict(model=base_model),
    compression=dict(type='SegmindSmall'),
    features='distill_sd',
    loss_weights=dict(task=1.0, output=0.5, feature=0.5))
