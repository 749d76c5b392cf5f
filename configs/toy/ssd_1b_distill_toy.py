# Toy twin of configs/ssd_1b/ssd_1b_distill_from_sdxl.py
# (docs/distill.md, "Toy twins"): the SSD1B recipe and its layer-level KD
# applied unchanged to the toy SDXL teacher (trained on first use with
# configs/toy/sdxl_finetune_toy.py), with the toy world's model ids, data,
# schedule and intervals; tests/test_config_parity.py checks that nothing
# else differs.
_base_ = [
    '../ssd_1b/ssd_1b_distill_from_sdxl.py',
    '../_base_/schedules/toy_distill.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    student=dict(model=base_model),
    # fp32 teacher and optimizer: the README's main job must finish within
    # 10 minutes on 2 CPU cores, and bf16 is 4-5x slower on a CPU without
    # bf16 arithmetic (docs/performance.md).
    # tests/test_engine/test_twin_precision.py trains this twin with the
    # real config's bf16 too.
    teacher=dict(model=base_model, dtype=None))
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None)
train_dataloader = {{_base_.toy.train_dataloader}}
train_pipeline = {{_base_.toy.train_dataloader.dataset.pipeline}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = {{_base_.toy.custom_hooks}}
# tools/test.py: the teacher samples the same prompts and seeds too
test_cfg = dict(teacher=True)
