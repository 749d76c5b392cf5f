# GPU schedule for SDXL-family distillation (bf16 autocast, fp32 master
# weights; the teacher itself runs in bf16 without grad).
# Includes the default runtime, so it can override its hooks.
_base_ = ['../default_runtime.py']
# DiffusionOptimWrapper: bf16 autocast on a GPU or a CPU (float16 gets
# loss scaling on a GPU); a NaN/inf loss stops the run ('skip' goes on).
optim_wrapper = dict(
    type='DiffusionOptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',
    dtype='bfloat16',
    nonfinite='stop',
    optimizer=dict(type='AdamW', lr=1e-5, weight_decay=1e-2, fused=True),
    clip_grad=dict(max_norm=1.0))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=100000)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
default_hooks = dict(checkpoint=dict(interval=5000, max_keep_ckpts=3))
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['yoda pokemon', 'a photo of an astronaut riding a horse'],
        interval=5000),
    dict(type='DiffusersExportHook', interval=5000),
]
