# Toy twin of configs/lcm/lcm_lora_ssd_1b_distilled.py, the chain toy SDXL
# teacher -> toy SSD-1B student (run ssd_1b_distill_toy.py first) ->
# LCM-LoRA on that student, which is its own teacher.
_base_ = [
    '../_base_/datasets/toy_shapes.py',
    '../_base_/schedules/toy_distill.py',
]
teacher_model = 'diffkd-toy/sdxl-teacher'
student_unet = 'work_dirs/ssd_1b_distill_toy/final/unet'
model = dict(
    type='LatentConsistencyDistiller',
    student=dict(
        type='StableDiffusionXL',
        model=teacher_model,
        unet=student_unet,
        lora=dict(rank=8, alpha=8)),
    teacher=None,
    num_ddim_timesteps=50,
    w_min=2.0,
    w_max=5.0,
    time_cond_proj_dim=None,
    loss=dict(type='PseudoHuberLoss', c=0.001))
# No held-out validation: the consistency loss has no fixed-noise val step
# (HeldOutLoss takes the task and KD terms of the other models).
val_dataloader = None
val_evaluator = None
val_cfg = None
optim_wrapper = dict(optimizer=dict(lr=1e-3, weight_decay=0.0))
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts={{_base_.vis_prompts}},
        interval=150,
        num_inference_steps=4,
        guidance_scale=1.0,
        upscale=4),
    dict(type='DiffusersExportHook'),
]
test_cfg = dict(sampling=dict(num_inference_steps=4, guidance_scale=1.0))
