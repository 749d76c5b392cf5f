optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-5, weight_decay=1e-2),
    clip_grad=dict(max_norm=1.0))
train_cfg = dict(type='DiffusionTrainLoop', max_iters=10000)
param_scheduler = [dict(type='ConstantLR', factor=1.0, by_epoch=False)]
