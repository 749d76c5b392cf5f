# DreamBooth-LoRA on the distilled toy tiny-sd student (run
# distill_sd_tiny_toy.py first; twin of configs/distill_sd_dreambooth/).
_base_ = './sd15_dreambooth_lora_toy.py'
student_unet = 'work_dirs/distill_sd_tiny_toy/final/unet'
model = dict(unet=student_unet)
train_dataloader = dict(
    dataset=dict(class_image_generation=dict(unet=student_unet)))
