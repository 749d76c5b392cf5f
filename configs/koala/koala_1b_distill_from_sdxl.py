# KOALA-1B (arXiv 2312.04005): fewer resnets and transformer layers, mid
# block kept; self-attention feature distillation.
_base_ = '../ssd_1b/ssd_1b_distill_from_sdxl.py'
model = dict(
    compression=dict(type='KOALA1B'),
    features='self_attention',
    loss_weights=dict(task=1.0, output=1.0, feature=1.0))
