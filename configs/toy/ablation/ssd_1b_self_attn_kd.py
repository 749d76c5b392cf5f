# Toy ablation, SSD-1B student of the toy SDXL teacher:
# (d) task + output KD + KOALA-style feature KD on the self-attention
# outputs only (KOALA: self-attention features carry the most signal).
_base_ = './ssd_1b_feature_kd.py'
model = dict(features='self_attention')
