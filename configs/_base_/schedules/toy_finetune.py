# CPU schedule for the toy world: a UNet trained from scratch in minutes.
# Includes the default runtime, so it can override its hooks.
_base_ = ['../default_runtime.py']
max_iters = 700
optim_wrapper = dict(
    type='DiffusionOptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',
    dtype=None,
    nonfinite='stop',
    optimizer=dict(type='AdamW', lr=1.5e-3, weight_decay=0.0, fused=True),
    clip_grad=dict(max_norm=1.0))
# The held-out loss (../datasets/toy_shapes.py) at half-way and at the end.
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters, val_interval=350)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=max_iters,
         eta_min=5e-5),
]
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=350, max_keep_ckpts=1))
vis_prompts = [
    'a red circle on a blue background',
    'a yellow square on a black background',
    'a green triangle on a white background',
    'a blue circle on a yellow background',
    'a white square on a red background',
    'a black triangle on a green background',
]
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=vis_prompts,
        interval=350,
        num_inference_steps=20,
        guidance_scale=4.0,
        upscale=4),
    dict(type='DiffusersExportHook'),
]
