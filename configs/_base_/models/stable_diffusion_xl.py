model = dict(
    type='StableDiffusionXL',
    model='stabilityai/stable-diffusion-xl-base-1.0',
    loss=dict(type='L2Loss'),
    gradient_checkpointing=True)
