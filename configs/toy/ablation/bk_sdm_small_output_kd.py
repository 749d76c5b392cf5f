# Toy ablation, BK-SDM-small student of the toy SD-1.5 teacher:
# (b) task + output KD (match the teacher's noise prediction).
_base_ = './bk_sdm_small_feature_kd.py'
model = dict(
    features=None, loss_weights=dict(task=1.0, output=1.0, feature=0.0))
