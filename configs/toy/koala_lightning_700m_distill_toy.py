# Toy twin of configs/koala/koala_lightning_700m_distill.py (docs/distill.md,
# "Toy twins"): the teacher is a step-distilled UNet apart from the
# student's base pipeline, here the toy's SDXL-Lightning,
# diffkd-toy/sdxl-teacher-lcm (the toy SDXL teacher consistency-distilled by
# configs/toy/sdxl_lcm_teacher_toy.py; build it first with
# `python tools/build_toy_world.py --only sdxl-teacher-lcm`). The KOALA-700M
# student starts from it through the module map, keeps the toy pipeline's
# text encoders, VAE and trailing Euler scheduler, and samples in few steps.
# Only the toy world's model ids, data, schedule and intervals are set here;
# tests/test_config_parity.py checks that nothing else differs.
_base_ = [
    '../koala/koala_lightning_700m_distill.py',
    '../_base_/schedules/toy_distill.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    student=dict(model=base_model),
    teacher=dict(model='diffkd-toy/sdxl-teacher-lcm', subfolder='unet'))
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
        guidance_scale=3.5,
        upscale=4),
    dict(type='DiffusersExportHook'),
]
test_cfg = dict(teacher=True)
