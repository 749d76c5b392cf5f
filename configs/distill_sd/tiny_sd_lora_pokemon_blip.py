# LoRA text-to-image on the released tiny-sd.
_base_ = '../stable_diffusion/stable_diffusion_v15_lora_pokemon_blip.py'
model = dict(model='segmind/tiny-sd')
