# DiffusionOptimWrapper owns the step: mixed precision (dtype: None,
# 'bfloat16', 'float16' or 'auto', which tools/train.py --amp sets), the
# gradient norm and what a NaN/inf loss does (nonfinite: 'stop', 'skip',
# 'off'); only trainable parameters reach the optimizer.
optim_wrapper = dict(
    type='DiffusionOptimWrapper',
    constructor='TrainableParamsOptimWrapperConstructor',
    dtype=None,
    nonfinite='stop',
    optimizer=dict(type='AdamW', lr=1e-5, weight_decay=1e-2),
    clip_grad=dict(max_norm=1.0))
train_cfg = dict(type='IterBasedTrainLoop', max_iters=10000)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
