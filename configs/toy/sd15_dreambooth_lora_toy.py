# DreamBooth-LoRA on the toy SD-1.5 teacher (twin of
# configs/stable_diffusion_dreambooth/).
_base_ = './sdxl_dreambooth_lora_toy.py'
model = dict(type='StableDiffusion', model='diffkd-toy/sd15-teacher')
train_dataloader = dict(
    dataset=dict(
        class_image_generation=dict(model='diffkd-toy/sd15-teacher')))
