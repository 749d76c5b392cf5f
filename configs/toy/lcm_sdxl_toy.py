# Toy twin of configs/lcm/lcm_sdxl.py: the toy SDXL teacher distilled into a
# few-step LCM UNet (guidance embedding, EMA target, pseudo-Huber loss) on
# the toy shapes, CPU-sized schedule. The toy teacher samples best at CFG
# scale about 4, so w (= scale - 1) is drawn around 3.
_base_ = [
    '../_base_/datasets/toy_shapes.py',
    '../_base_/schedules/toy_distill.py',
]
teacher_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    type='LatentConsistencyDistiller',
    student=dict(type='StableDiffusionXL', model=teacher_model),
    teacher=dict(model=teacher_model),
    num_ddim_timesteps=50,
    w_min=2.0,
    w_max=5.0,
    time_cond_proj_dim=256,
    target_momentum=0.05,
    loss=dict(type='PseudoHuberLoss', c=0.001))
# No held-out validation: the consistency loss has no fixed-noise val step
# (HeldOutLoss takes the task and KD terms of the other models).
val_dataloader = None
val_evaluator = None
val_cfg = None
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=0.0))
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts={{_base_.vis_prompts}},
        interval=150,
        num_inference_steps=4,
        guidance_scale=4.0,
        upscale=4),
    dict(type='DiffusersExportHook'),
]
# tools/test.py samples the student as it is meant to be used: 4 LCM steps
test_cfg = dict(sampling=dict(num_inference_steps=4, guidance_scale=4.0))
