# LCM-LoRA on the released SSD-1B pipeline (its own UNet is the teacher).
_base_ = './lcm_lora_sdxl.py'
base_model = 'segmind/SSD-1B'
model = dict(student=dict(model=base_model))
