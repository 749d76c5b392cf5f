# The SD-1.5-topology twin of sdxl_finetune_toy.py; builds
# `diffkd-toy/sd15-teacher`.
_base_ = ['../_base_/datasets/toy_shapes.py',
          '../_base_/schedules/toy_finetune.py']
model = dict(type='StableDiffusion', model='diffkd-toy/sd15')
