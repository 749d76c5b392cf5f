model = dict(
    type='StableDiffusion',
    model='runwayml/stable-diffusion-v1-5',
    loss=dict(type='L2Loss'),
    gradient_checkpointing=True)
