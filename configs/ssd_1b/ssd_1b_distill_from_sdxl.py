# SSD-1B compressed from SDXL (Segmind, arXiv 2401.02677): the student's
# layout and initial weights come from the SSD1B recipe applied to the
# teacher; layer-level KD on every resnet and attention output,
# loss = task + 0.5 * output KD + 0.5 * feature KD.
# Data: SSD-1B's model card names GRIT and Midjourney scrape data, here as
# local WebDataset shards (img2dataset output of each, see
# configs/_base_/datasets/laion_aesthetics_shards_1024.py) with SDXL's
# aspect-ratio buckets, so the student keeps the teacher's multi-aspect
# ability.
_base_ = [
    '../_base_/datasets/laion_aesthetics_shards_1024.py',
    '../_base_/schedules/distill_sdxl_bf16.py',
]
base_model = 'stabilityai/stable-diffusion-xl-base-1.0'
model = dict(
    type='DiffusionDistiller',
    student=dict(
        type='StableDiffusionXL',
        model=base_model,
        gradient_checkpointing=True),
    teacher=dict(model=base_model, dtype='bfloat16'),
    compression=dict(type='SSD1B'),
    student_init='teacher',
    features='layers',
    loss_weights=dict(task=1.0, output=0.5, feature=0.5))
train_dataloader = dict(
    dataset=dict(shards=['data/grit/*.tar', 'data/midjourney/*.tar']))
# The stream shuffles per epoch itself (no sampler to seed).
default_hooks = dict(sampler_seed=None)
