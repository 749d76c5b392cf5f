# Toy twin of configs/ssd_1b/ssd_1b_distill.py (docs/distill.md, "Toy
# twins"): a pretrained student UNet (the final/unet folder of a
# ssd_1b_distill_toy run) distilled further, with the toy world's model
# ids, data, schedule and intervals; tests/test_config_parity.py checks
# that nothing else differs.
_base_ = [
    '../ssd_1b/ssd_1b_distill.py',
    '../_base_/schedules/toy_distill.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    student=dict(model=base_model),
    teacher=dict(model=base_model),
    # read as <name_or_path>/unet (the real config's subfolder)
    student_pretrained=dict(name_or_path='work_dirs/ssd_1b_distill_toy/final'))
train_dataloader = {{_base_.toy.train_dataloader}}
train_pipeline = {{_base_.toy.train_dataloader.dataset.pipeline}}
optim_wrapper = {{_base_.toy.optim_wrapper}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = {{_base_.toy.custom_hooks}}
test_cfg = dict(teacher=True)
