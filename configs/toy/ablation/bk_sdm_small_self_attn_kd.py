# Toy ablation, BK-SDM-small student of the toy SD-1.5 teacher:
# (d) task + output KD + KOALA-style feature KD on the self-attention
# outputs only (KOALA: self-attention features carry the most signal).
_base_ = './bk_sdm_small_feature_kd.py'
model = dict(features='self_attention')
