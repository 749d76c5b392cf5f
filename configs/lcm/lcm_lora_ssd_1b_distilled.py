# The chain SDXL -> SSD-1B (block removal) -> LCM-LoRA: a few-step LoRA on
# the SSD-1B student distilled by configs/ssd_1b/ssd_1b_distill_from_sdxl.py
# (run it first). The student's UNet is its own teacher; the export records
# it as base_unet, so tools/infer.py rebuilds SDXL's pipeline around it.
_base_ = './lcm_lora_sdxl.py'
student_unet = 'work_dirs/ssd_1b_distill_from_sdxl/final/unet'
model = dict(student=dict(unet=student_unet))
