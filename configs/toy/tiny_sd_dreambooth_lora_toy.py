# Toy twin of configs/distill_sd_dreambooth/tiny_sd_dreambooth_lora_dog.py
# (docs/distill.md, "Toy twins"): DreamBooth-LoRA on the distilled toy
# tiny-sd student (run distill_sd_tiny_toy.py first), class images drawn by
# the student itself. Only the toy world's model ids, data, schedule,
# intervals and LoRA capacity are set here; tests/test_config_parity.py
# checks that nothing else differs.
_base_ = [
    ('../distill_sd_dreambooth/'
     'tiny_sd_dreambooth_lora_dog.py'),
    '../_base_/schedules/toy_dreambooth_lora.py',
]
base_model = 'diffkd-toy/sd15-teacher'
student_unet = 'work_dirs/distill_sd_tiny_toy/final/unet'
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
optim_wrapper = {{_base_.toy.optim_wrapper}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = {{_base_.toy.custom_hooks}}
