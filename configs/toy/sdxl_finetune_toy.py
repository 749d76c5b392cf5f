# Trains the toy SDXL-topology UNet from scratch on the toy shapes: the
# offline stand-in for an SDXL fine-tune, and the teacher of the toy
# distillation configs (`diffkd-toy/sdxl-teacher` is built with this file).
_base_ = [
    '../_base_/datasets/toy_shapes.py',
    '../_base_/schedules/toy_finetune.py',
]
model = dict(type='StableDiffusionXL', model='diffkd-toy/sdxl')
