# LCM-LoRA (Luo et al. 2023): consistency distillation into rank-64 peft
# adapters on the UNet, which then turn the model they were trained on (and
# its fine-tunes) into a few-step sampler. No guidance embedding: sample
# with LCMScheduler (final/scheduler) in 2-8 steps at guidance_scale 1-2.
# The teacher is the UNet the adapters are trained on; the target is the
# student itself without grad (diffusers' train_lcm_distill_lora_sdxl.py).
_base_ = './lcm_sdxl.py'
model = dict(
    student=dict(lora=dict(rank=64, alpha=64)),
    time_cond_proj_dim=None,
    teacher=None)
optim_wrapper = dict(optimizer=dict(lr=1e-4))
train_cfg = dict(max_iters=3000)
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['yoda pokemon', 'a photo of an astronaut riding a horse'],
        num_inference_steps=4,
        guidance_scale=1.0,
        interval=500),
    dict(type='DiffusersExportHook', interval=500),
]
