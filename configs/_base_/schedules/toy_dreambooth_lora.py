# CPU schedule for toy DreamBooth-LoRA: 500 steps at 3e-3, a checkpoint
# and a LoRA export every 250, samples of the subject and of its class.
# Values for a toy twin to assign (see ../datasets/toy_shapes.py).
_base_ = ['../datasets/toy_dreambooth.py']
toy = dict(
    # The toy UNet is tiny: attention projections alone lack the capacity
    # to learn a new shape in a few hundred steps, so the ResNet convs get
    # adapters too (real configs keep diffusers' attention-only default).
    lora=dict(
        rank=16,
        alpha=16,
        target_modules=['to_q', 'to_k', 'to_v', 'to_out.0', 'conv1',
                        'conv2']),
    optim_wrapper=dict(optimizer=dict(lr=3e-3)),
    train_cfg=dict(max_iters=500),
    param_scheduler=[
        dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0,
             end=10),
        dict(type='CosineAnnealingLR', by_epoch=False, begin=10, end=500,
             eta_min=1e-4),
    ],
    default_hooks=dict(
        logger=dict(interval=10),
        checkpoint=dict(interval=250, max_keep_ckpts=2)),
    custom_hooks=[
        dict(
            type='VisualizationHook',
            prompts=['a sks circle'] * 3 + ['a circle'],
            interval=250,
            num_inference_steps=20,
            guidance_scale=2.0,
            upscale=4),
        dict(type='DiffusersExportHook', interval=250),
    ])
