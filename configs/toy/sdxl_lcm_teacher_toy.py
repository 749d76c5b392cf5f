# The toy world's step-distilled teacher (its SDXL-Lightning): the toy SDXL
# teacher consistency-distilled at one CFG scale (4, w = 3) into a plain
# UNet without a guidance input, so distillers and pipelines run it as they
# run any UNet. Built as the toy asset diffkd-toy/sdxl-teacher-lcm
# (python tools/build_toy_world.py --only sdxl-teacher-lcm); it samples in
# 2-8 steps at guidance_scale 1, with LCMScheduler (its pipeline's) or
# trailing Euler.
_base_ = './lcm_sdxl_toy.py'
model = dict(w_min=3.0, w_max=3.0, time_cond_proj_dim=None)
custom_hooks = [
    dict(_base_.custom_hooks[0], guidance_scale=1.0),
    dict(type='DiffusersExportHook'),
]
test_cfg = dict(sampling=dict(num_inference_steps=4, guidance_scale=1.0))
