# BK-SDM-v2-Small from SD-2.1-base (v-prediction teacher at 512 px).
_base_ = './bk_sdm_small_distill_from_sd14.py'
base_model = 'stabilityai/stable-diffusion-2-1-base'
model = dict(
    student=dict(model=base_model),
    teacher=dict(model=base_model))
