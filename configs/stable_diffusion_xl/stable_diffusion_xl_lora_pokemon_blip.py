# LoRA (rank 8) on SDXL's UNet attention projections; the export is
# final/lora/pytorch_lora_weights.safetensors for pipe.load_lora_weights().
_base_ = './stable_diffusion_xl_pokemon_blip.py'
model = dict(lora=dict(rank=8, alpha=8), gradient_checkpointing=False)
optim_wrapper = dict(optimizer=dict(lr=1e-4))
