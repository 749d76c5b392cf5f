# Toy twin of configs/lcm/lcm_lora_ssd_1b_distilled.py, the chain toy SDXL
# teacher -> toy SSD-1B student (run ssd_1b_distill_toy.py first) ->
# LCM-LoRA on that student, which is its own teacher. Only the toy world's
# model ids, data, schedule and intervals are set here, with w's range and
# the LoRA rank of a tiny UNet; tests/test_config_parity.py checks that
# nothing else differs.
_base_ = [
    '../lcm/lcm_lora_ssd_1b_distilled.py',
    '../_base_/schedules/toy_distill.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
student_unet = 'work_dirs/ssd_1b_distill_toy/final/unet'
model = dict(
    student=dict(model=base_model, unet=student_unet,
                 lora=dict(rank=8, alpha=8)),
    w_min=2.0,
    w_max=5.0)
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None,
                     optimizer=dict(lr=1e-3))
train_dataloader = {{_base_.toy.train_dataloader}}
train_pipeline = {{_base_.toy.train_dataloader.dataset.pipeline}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
# No held-out validation: the consistency loss has no fixed-noise val step.
val_dataloader = None
val_evaluator = None
val_cfg = None
custom_hooks = [
    dict(_base_.toy.custom_hooks[0], num_inference_steps=4,
         guidance_scale=1.0),
    dict(type='DiffusersExportHook'),
]
test_cfg = dict(sampling=dict(num_inference_steps=4, guidance_scale=1.0))
