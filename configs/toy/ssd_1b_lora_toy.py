# LoRA on the distilled toy SSD-1B student (run ssd_1b_distill_toy.py
# first): distilled models train LoRAs faster than their teachers.
_base_ = './sdxl_lora_toy.py'
model = dict(unet='work_dirs/ssd_1b_distill_toy/final/unet')
