# Toy twin of configs/vega/segmind_vega_distill_from_sdxl.py
# (docs/distill.md, "Toy twins"): that config with the toy world's model
# ids, data, schedule and intervals; tests/test_config_parity.py checks
# that nothing else differs.
_base_ = [
    '../vega/segmind_vega_distill_from_sdxl.py',
    '../_base_/schedules/toy_distill.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(student=dict(model=base_model), teacher=dict(model=base_model))
train_dataloader = {{_base_.toy.train_dataloader}}
train_pipeline = {{_base_.toy.train_dataloader.dataset.pipeline}}
optim_wrapper = {{_base_.toy.optim_wrapper}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = {{_base_.toy.custom_hooks}}
# tools/test.py: the teacher samples the same prompts and seeds too
test_cfg = dict(teacher=True)
