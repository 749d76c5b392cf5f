# Toy twin of configs/ssd_1b/ssd_1b_lora_transplant.py (docs/distill.md,
# "Toy twins"): the toy SDXL teacher with its DreamBooth-LoRA supervises
# the distilled toy SSD-1B student with that LoRA transplanted, on the
# LoRA's own data (docs/results.md measures the concept rate):
#   mim train diffkd ssd_1b_distill_toy.py
#   mim train diffkd sdxl_dreambooth_lora_toy.py
#   python tools/transplant_lora.py \
#       work_dirs/sdxl_dreambooth_lora_toy/final/lora \
#       --teacher diffkd-toy/sdxl-teacher --compression SSD1B \
#       --out work_dirs/ssd_1b_lora_transplant_toy.safetensors
#   mim train diffkd ssd_1b_lora_transplant_toy.py
# Only the toy world's model ids, data, schedule, intervals and LoRA
# capacity (the teacher LoRA's) are set here; tests/test_config_parity.py
# checks that nothing else differs.
_base_ = [
    '../ssd_1b/ssd_1b_lora_transplant.py',
    '../_base_/schedules/toy_dreambooth_lora.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    student=dict(
        model=base_model,
        lora=dict(_base_.toy.lora,
                  weights='work_dirs/ssd_1b_lora_transplant_toy.safetensors')),
    # fp32 on the CPU, as configs/toy/ssd_1b_distill_toy.py
    teacher=dict(model=base_model, dtype=None,
                 lora='work_dirs/sdxl_dreambooth_lora_toy/final/lora'),
    student_pretrained=dict(name_or_path='work_dirs/ssd_1b_distill_toy/final'))
train_pipeline = {{_base_.toy.train_pipeline}}
# The teacher LoRA's data, class images included (the same cached ones).
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        instance_data={{_base_.toy.instance_data}},
        instance_prompt={{_base_.toy.instance_prompt}},
        class_prompt={{_base_.toy.class_prompt}},
        num_class_images=32,
        class_image_generation=dict(
            model=base_model,
            num_inference_steps=20,
            guidance_scale=4.0,
            batch_size=8),
        pipeline=train_pipeline))
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None,
                     optimizer=dict(lr=1e-3))
# A short pass from a LoRA that already draws the subject.
train_cfg = dict(max_iters=100)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=100,
         eta_min=1e-4)
]
default_hooks = dict(
    logger=dict(interval=10), checkpoint=dict(interval=100))
custom_hooks = [
    dict(_base_.toy.custom_hooks[0], interval=100),
    dict(type='DiffusersExportHook', interval=100),
]
