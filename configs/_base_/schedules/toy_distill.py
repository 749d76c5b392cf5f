# CPU schedule for toy distillation: the student starts from the teacher's
# weights, so a shorter run at a lower learning rate.
_base_ = ['./toy_finetune.py']
max_iters = 300
optim_wrapper = dict(optimizer=dict(lr=5e-4))
train_cfg = dict(max_iters=max_iters, val_interval=150)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
         eta_min=5e-5)
]
default_hooks = dict(
    logger=dict(interval=25), checkpoint=dict(interval=150))
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts={{_base_.vis_prompts}},
        interval=150,
        num_inference_steps=20,
        guidance_scale=4.0,
        upscale=4),
    dict(type='DiffusersExportHook'),
]
