# KOALA-1B (arXiv 2312.04005): fewer resnets and transformer layers, mid
# block kept; self-attention feature distillation.
_base_ = '../ssd_1b/ssd_1b_distill_from_sdxl.py'
model = dict(
    compression=dict(type='KOALA1B'),
    features='self_attention',
    loss_weights=dict(task=1.0, output=1.0, feature=1.0))
# Data: LAION-Aesthetics V2 6+ (the KOALA paper's training set) as local
# WebDataset shards; to build them see
# configs/_base_/datasets/laion_aesthetics_shards_1024.py.
train_dataloader = dict(
    dataset=dict(shards='data/laion_aesthetics_6plus/*.tar'))
