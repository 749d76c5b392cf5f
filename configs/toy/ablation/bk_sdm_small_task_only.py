# Toy ablation, BK-SDM-small student of the toy SD-1.5 teacher:
# (a) the task loss only -- no teacher signal at all.
_base_ = './bk_sdm_small_feature_kd.py'
model = dict(
    features=None, loss_weights=dict(task=1.0, output=0.0, feature=0.0))
