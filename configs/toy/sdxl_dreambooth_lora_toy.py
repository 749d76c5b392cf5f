# Toy twin of
# configs/stable_diffusion_xl_dreambooth/stable_diffusion_xl_dreambooth_lora_dog.py
# (docs/distill.md, "Toy twins"): DreamBooth-LoRA on the toy SDXL teacher,
# which learns "a sks circle" (a red ring) from five photos, with prior
# preservation on "a circle". Writes final/lora/ (and iter_N/lora/) for
# diffusers' load_lora_weights. Only the toy world's model ids, data,
# schedule, intervals and LoRA capacity are set here;
# tests/test_config_parity.py checks that nothing else differs.
_base_ = [
    ('../stable_diffusion_xl_dreambooth/'
     'stable_diffusion_xl_dreambooth_lora_dog.py'),
    '../_base_/schedules/toy_dreambooth_lora.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(model=base_model, lora={{_base_.toy.lora}})
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
            num_inference_steps=20,
            guidance_scale=4.0,
            batch_size=8),
        pipeline=train_pipeline))
# fp32 on the CPU: bf16 is 4-5x slower on a CPU without bf16 arithmetic
# (docs/performance.md), and the README and docs/results.md time this run.
# tests/test_engine/test_twin_precision.py trains this twin with the real
# config's precision too.
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None)
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = {{_base_.toy.custom_hooks}}
