# Toy twin of configs/lcm/lcm_sdxl.py: the toy SDXL teacher distilled into a
# few-step LCM UNet (guidance embedding, EMA target, pseudo-Huber loss) on
# the toy shapes, CPU-sized schedule. Only the toy world's model ids, data,
# schedule and intervals are set here, and w's range (the toy teacher
# samples best at CFG scale about 4); tests/test_config_parity.py checks
# that nothing else differs.
_base_ = [
    '../lcm/lcm_sdxl.py',
    '../_base_/schedules/toy_distill.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    student=dict(model=base_model),
    teacher=dict(model=base_model, dtype=None),
    w_min=2.0,
    w_max=5.0)
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None,
                     optimizer=dict(lr=2e-4))
train_dataloader = {{_base_.toy.train_dataloader}}
train_pipeline = {{_base_.toy.train_dataloader.dataset.pipeline}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
# No held-out validation: the consistency loss has no fixed-noise val step
# (HeldOutLoss takes the task and KD terms of the other models).
val_dataloader = None
val_evaluator = None
val_cfg = None
custom_hooks = [
    dict(_base_.toy.custom_hooks[0], num_inference_steps=4,
         guidance_scale=4.0),
    dict(type='DiffusersExportHook'),
]
