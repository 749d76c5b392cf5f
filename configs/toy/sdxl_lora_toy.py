# LoRA text-to-image on the toy SDXL teacher (peft adapters on the UNet's
# attention projections); writes final/lora/pytorch_lora_weights.safetensors
# for diffusers' load_lora_weights.
_base_ = ['../_base_/datasets/toy_shapes.py',
          '../_base_/schedules/toy_finetune.py']
model = dict(
    type='StableDiffusionXL',
    model='diffkd-toy/sdxl-teacher',
    lora=dict(rank=8, alpha=8))
max_iters = 200
optim_wrapper = dict(optimizer=dict(lr=1e-3))
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
         eta_min=1e-4)
]
