# DreamBooth-LoRA on the distilled toy SSD-1B student (run
# ssd_1b_distill_toy.py first): same data and schedule as the teacher run,
# class images drawn by the student itself.
_base_ = './sdxl_dreambooth_lora_toy.py'
student_unet = 'work_dirs/ssd_1b_distill_toy/final/unet'
model = dict(unet=student_unet)
train_dataloader = dict(
    dataset=dict(class_image_generation=dict(unet=student_unet)))
