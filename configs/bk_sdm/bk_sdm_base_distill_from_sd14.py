# BK-SDM-Base (arXiv 2305.15798): SD-1.4 teacher, one layer per down stage,
# two per up stage; KD on every down/up stage output, weights 1/1/1.
# Data: the paper's 212k LAION-Aesthetics V2 6.5+ pairs (its larger runs:
# 2.3M), as local WebDataset shards with SD-1.x buckets; see
# configs/_base_/datasets/laion_aesthetics_shards_512.py to build them.
_base_ = [
    '../_base_/datasets/laion_aesthetics_shards_512.py',
    '../_base_/schedules/distill_sd_fp16.py',
]
base_model = 'CompVis/stable-diffusion-v1-4'
model = dict(
    type='DiffusionDistiller',
    student=dict(type='StableDiffusion', model=base_model),
    teacher=dict(model=base_model, dtype='float16'),
    compression=dict(type='BKSDMBase'),
    student_init='teacher',
    features='bk_sdm',
    loss_weights=dict(task=1.0, output=1.0, feature=1.0))
# The stream shuffles per epoch itself (no sampler to seed).
default_hooks = dict(sampler_seed=None)
