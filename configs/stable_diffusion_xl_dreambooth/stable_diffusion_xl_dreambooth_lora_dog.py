# DreamBooth-LoRA on SDXL: "a photo of sks dog" with prior preservation.
# Load the result with plain diffusers:
#   pipe = DiffusionPipeline.from_pretrained(
#       'stabilityai/stable-diffusion-xl-base-1.0')
#   pipe.load_lora_weights('work_dirs/stable_diffusion_xl_dreambooth_lora_dog/final/lora')
_base_ = [
    '../_base_/models/stable_diffusion_xl.py',
    '../_base_/datasets/dog_dreambooth_1024.py',
    '../_base_/schedules/dreambooth_lora_500.py',
]
model = dict(lora=dict(rank=8, alpha=8), prior_loss_weight=1.0)
# SDXL activations overflow in fp16; bf16 keeps their range.
optim_wrapper = dict(dtype='bfloat16')
