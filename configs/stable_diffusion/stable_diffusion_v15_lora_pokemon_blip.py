# LoRA text-to-image on SD-1.5 (rank 8 on the UNet attention projections);
# the export is final/lora/pytorch_lora_weights.safetensors.
_base_ = './stable_diffusion_v15_pokemon_blip.py'
model = dict(lora=dict(rank=8, alpha=8), gradient_checkpointing=False)
optim_wrapper = dict(optimizer=dict(lr=1e-4))
