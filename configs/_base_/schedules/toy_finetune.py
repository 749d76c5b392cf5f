# CPU schedule for the toy world: a UNet trained from scratch in minutes.
# Values for a toy twin to assign (see ../datasets/toy_shapes.py); the
# twin's real config brings the optimizer, the precision and the hooks.
_base_ = ['../datasets/toy_shapes.py']
toy = dict(
    optim_wrapper=dict(optimizer=dict(lr=1.5e-3)),
    # The held-out loss (../datasets/toy_shapes.py) at half-way and at the
    # end.
    train_cfg=dict(max_iters=700, val_interval=350),
    param_scheduler=[
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=50),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=700,
             eta_min=5e-5),
    ],
    default_hooks=dict(
        logger=dict(interval=50),
        checkpoint=dict(interval=350, max_keep_ckpts=1)),
    custom_hooks=[
        dict(
            type='VisualizationHook',
            prompts={{_base_.toy.vis_prompts}},
            interval=350,
            num_inference_steps=20,
            guidance_scale=4.0,
            upscale=4),
        dict(type='DiffusersExportHook'),
    ],
    # TrainableEMAHook: an average over the last ~50 steps (a real run's
    # momentum 1e-4 averages over 10k steps, longer than a whole toy run).
    ema_momentum=0.02)
