_base_ = [
    '../_base_/models/stable_diffusion_v15.py',
    '../_base_/datasets/pokemon_blip_512.py',
    '../_base_/schedules/adamw_1e-5_10k.py',
    '../_base_/default_runtime.py',
]
model = dict(loss=dict(type='SNRL2Loss', snr_gamma=5.0))
optim_wrapper = dict(dtype='float16')
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['yoda pokemon', 'a cute blue dragon pokemon'],
        interval=1000),
    dict(type='DiffusersExportHook', interval=1000),
]
