# DreamBooth-LoRA on Segmind's tiny-sd (small-sd without the mid block).
_base_ = ('../stable_diffusion_dreambooth/'
          'stable_diffusion_v15_dreambooth_lora_dog.py')
model = dict(model='segmind/tiny-sd')
train_dataloader = dict(
    dataset=dict(class_image_generation=dict(model='segmind/tiny-sd')))
