# SDXL's DreamBooth-LoRA carried onto SSD-1B, then a short KD pass: SDXL
# with its LoRA (frozen) supervises SSD-1B with the transplanted LoRA, and
# only the student's LoRA trains (docs/export.md, "Transplant"). The loss
# is SSD-1B's distillation loss, task + 0.5 * output KD + 0.5 * layer KD,
# on the LoRA's own DreamBooth data (instance and class rows).
#   mim train diffkd stable_diffusion_xl_dreambooth_lora_dog.py
#   python tools/transplant_lora.py \
#       work_dirs/stable_diffusion_xl_dreambooth_lora_dog/final/lora \
#       --teacher stabilityai/stable-diffusion-xl-base-1.0 \
#       --compression SSD1B --out work_dirs/ssd_1b_lora_transplant.safetensors
#   mim train diffkd ssd_1b_lora_transplant.py
_base_ = [
    '../_base_/datasets/dog_dreambooth_1024.py',
    '../_base_/schedules/dreambooth_lora_500.py',
]
base_model = 'stabilityai/stable-diffusion-xl-base-1.0'
model = dict(
    type='DiffusionDistiller',
    student=dict(
        type='StableDiffusionXL',
        model=base_model,
        gradient_checkpointing=True,
        # the teacher LoRA's adapter
        # (stable_diffusion_xl_dreambooth_lora_dog.py)
        lora=dict(rank=8, alpha=8,
                  weights='work_dirs/ssd_1b_lora_transplant.safetensors'),
        prior_loss_weight=1.0),
    teacher=dict(
        model=base_model,
        dtype='bfloat16',
        lora='work_dirs/stable_diffusion_xl_dreambooth_lora_dog/final/lora'),
    compression=dict(type='SSD1B'),
    student_init='pretrained',
    student_pretrained=dict(name_or_path='segmind/SSD-1B', subfolder='unet'),
    features='layers',
    loss_weights=dict(task=1.0, output=0.5, feature=0.5))
# SDXL activations overflow in fp16; bf16 keeps their range.
optim_wrapper = dict(dtype='bfloat16')
# A short pass: the transplanted LoRA already draws the subject.
train_cfg = dict(max_iters=200)
