# DreamBooth-LoRA: 500 steps at 1e-4, a checkpoint and a LoRA export every
# 100 steps (iter_N/lora/), samples of the subject at the same interval.
# Includes the default runtime, so it can override its hooks.
_base_ = ['../default_runtime.py']
# fp16 with loss scaling on a GPU; bf16 autocast where there is no CUDA.
optim_wrapper = dict(
    type='DiffusionOptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',
    dtype='float16',
    nonfinite='stop',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-2),
    clip_grad=dict(max_norm=1.0))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=500)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=100, max_keep_ckpts=5))
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['A photo of sks dog in a bucket'] * 4,
        interval=100),
    dict(type='DiffusersExportHook', interval=100),
]
