# Latent consistency distillation of SDXL into a few-step LCM UNet (Luo et
# al. 2023; the settings of diffusers' train_lcm_distill_sdxl_wds.py):
# 50 DDIM solver steps, guidance weight w in [3, 15] (teacher CFG scale
# 1 + w) fed to the student through a 256-wide embedding, the target network
# an EMA with decay 0.95 (momentum 0.05), pseudo-Huber loss.
# Sample the result with LCMScheduler (written to final/scheduler) in 2-8
# steps at guidance_scale = 1 + w.
_base_ = [
    '../_base_/datasets/pokemon_blip_1024.py',
    '../_base_/schedules/distill_sdxl_bf16.py',
]
base_model = 'stabilityai/stable-diffusion-xl-base-1.0'
model = dict(
    type='LatentConsistencyDistiller',
    student=dict(
        type='StableDiffusionXL',
        model=base_model,
        gradient_checkpointing=True),
    teacher=dict(model=base_model, dtype='bfloat16'),
    num_ddim_timesteps=50,
    w_min=3.0,
    w_max=15.0,
    time_cond_proj_dim=256,
    target_momentum=0.05,
    loss=dict(type='PseudoHuberLoss', c=0.001))
optim_wrapper = dict(optimizer=dict(lr=1e-6, weight_decay=0.0))
train_cfg = dict(max_iters=10000)
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['yoda pokemon', 'a photo of an astronaut riding a horse'],
        num_inference_steps=4,
        guidance_scale=8.0,
        interval=1000),
    dict(type='DiffusersExportHook', interval=1000),
]
