# CPU schedule for LoRA on a trained toy UNet: 200 steps at 1e-3. Values
# for a toy twin to assign (see ../datasets/toy_shapes.py).
_base_ = ['./toy_finetune.py']
toy = dict(
    optim_wrapper=dict(optimizer=dict(lr=1e-3)),
    train_cfg=dict(max_iters=200),
    param_scheduler=[
        dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=200,
             eta_min=1e-4)
    ])
