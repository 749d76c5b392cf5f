# LoRA on the released SSD-1B (a pipeline of its own on the hub).
_base_ = '../stable_diffusion_xl/stable_diffusion_xl_lora_pokemon_blip.py'
model = dict(model='segmind/SSD-1B')
