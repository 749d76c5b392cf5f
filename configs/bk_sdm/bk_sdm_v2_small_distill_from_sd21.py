# BK-SDM-v2-Small from SD-2.1-base (512 px). The prediction type is read
# from the pipeline's scheduler config (epsilon for 2.1-base, v-prediction
# for SD-2.1 at 768 px), not set here.
_base_ = './bk_sdm_small_distill_from_sd14.py'
base_model = 'stabilityai/stable-diffusion-2-1-base'
model = dict(
    student=dict(model=base_model),
    teacher=dict(model=base_model))
