# Toy twin of configs/ssd_1b_dreambooth/ssd_1b_dreambooth_lora_dog.py
# (docs/distill.md, "Toy twins"): DreamBooth-LoRA on the distilled toy
# SSD-1B student (run ssd_1b_distill_toy.py first), same data and schedule
# as the teacher's run, class images drawn by the student itself. Only the
# toy world's model ids, data, schedule, intervals and LoRA capacity are set
# here; tests/test_config_parity.py checks that nothing else differs.
_base_ = [
    '../ssd_1b_dreambooth/ssd_1b_dreambooth_lora_dog.py',
    '../_base_/schedules/toy_dreambooth_lora.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
student_unet = 'work_dirs/ssd_1b_distill_toy/final/unet'
model = dict(model=base_model, unet=student_unet, lora={{_base_.toy.lora}})
train_pipeline = {{_base_.toy.train_pipeline}}
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
            unet=student_unet,
            num_inference_steps=20,
            guidance_scale=4.0,
            batch_size=8),
        pipeline=train_pipeline))
# fp32 on the CPU, as configs/toy/sdxl_dreambooth_lora_toy.py
# (docs/results.md compares the two runs' speed).
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None)
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = {{_base_.toy.custom_hooks}}
