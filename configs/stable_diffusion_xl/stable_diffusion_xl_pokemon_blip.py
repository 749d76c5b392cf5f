_base_ = [
    '../_base_/models/stable_diffusion_xl.py',
    '../_base_/datasets/pokemon_blip_1024.py',
    '../_base_/schedules/adamw_1e-5_10k.py',
    '../_base_/default_runtime.py',
]
# bf16 keeps the UNet's activations in range; the VAE always encodes in fp32.
optim_wrapper = dict(dtype='bfloat16')
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['yoda pokemon', 'a cute blue dragon pokemon'],
        interval=1000),
    dict(type='DiffusersExportHook', interval=1000),
    dict(type='TrainableEMAHook', momentum=1e-4),
]
