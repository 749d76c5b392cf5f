# Toy twin of configs/koala/koala_lightning_700m_distill.py (docs/distill.md,
# "Toy twins"): the teacher is a bare UNet folder apart from the student's
# base pipeline (here the trained toy teacher's unet/), and samples use few
# steps. Only the toy world's model ids, data, schedule and intervals are
# set here; tests/test_config_parity.py checks that nothing else differs.
_base_ = [
    '../koala/koala_lightning_700m_distill.py',
    '../_base_/schedules/toy_distill.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    student=dict(model=base_model),
    teacher=dict(model=base_model, subfolder='unet'))
train_dataloader = {{_base_.toy.train_dataloader}}
train_pipeline = {{_base_.toy.train_dataloader.dataset.pipeline}}
optim_wrapper = {{_base_.toy.optim_wrapper}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['a red circle on a blue background'],
        num_inference_steps=10,
        guidance_scale=4.0,
        upscale=4),
    dict(type='DiffusersExportHook'),
]
test_cfg = dict(teacher=True)
