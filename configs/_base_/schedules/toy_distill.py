# CPU schedule for toy distillation: the student starts from the teacher's
# weights, so a shorter run at a lower learning rate. Values for a toy twin
# to assign (see ../datasets/toy_shapes.py).
_base_ = ['./toy_finetune.py']
toy = dict(
    optim_wrapper=dict(optimizer=dict(lr=5e-4)),
    train_cfg=dict(max_iters=300, val_interval=150),
    param_scheduler=[
        dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=300,
             eta_min=5e-5)
    ],
    default_hooks=dict(
        logger=dict(interval=25), checkpoint=dict(interval=150)),
    custom_hooks=[
        dict(_base_.toy.custom_hooks[0], interval=150),
        dict(type='DiffusersExportHook'),
    ])
