# Toy ablation, SSD-1B student of the toy SDXL teacher:
# (a) the task loss only -- no teacher signal at all.
_base_ = './ssd_1b_feature_kd.py'
model = dict(
    features=None, loss_weights=dict(task=1.0, output=0.0, feature=0.0))
