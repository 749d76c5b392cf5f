# Toy ablation, SSD-1B student of the toy SDXL teacher:
# (b) task + output KD (match the teacher's noise prediction).
_base_ = './ssd_1b_feature_kd.py'
model = dict(
    features=None, loss_weights=dict(task=1.0, output=0.5, feature=0.0))
