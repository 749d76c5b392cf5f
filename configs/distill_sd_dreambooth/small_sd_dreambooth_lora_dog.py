# DreamBooth-LoRA on Segmind's distilled small-sd (SD-1.5 topology with
# blocks removed): LoRA trains faster on the distilled model.
_base_ = ('../stable_diffusion_dreambooth/'
          'stable_diffusion_v15_dreambooth_lora_dog.py')
model = dict(model='segmind/small-sd')
train_dataloader = dict(
    dataset=dict(class_image_generation=dict(model='segmind/small-sd')))
