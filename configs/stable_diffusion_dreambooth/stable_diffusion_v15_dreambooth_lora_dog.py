# DreamBooth-LoRA on SD-1.5: "a photo of sks dog" with prior preservation.
_base_ = [
    '../_base_/models/stable_diffusion_v15.py',
    '../_base_/datasets/dog_dreambooth_512.py',
    '../_base_/schedules/dreambooth_lora_500.py',
]
model = dict(lora=dict(rank=8, alpha=8), prior_loss_weight=1.0)
