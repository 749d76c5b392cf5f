# Toy twin of configs/ssd_1b/ssd_1b_distill_from_sdxl.py with the real
# config's data path: WebDataset shards of the toy shapes at several aspect
# ratios, batched per bucket (configs/_base_/datasets/toy_shapes_shards.py).
# Needs
#   python tools/build_toy_world.py --only shapes-shards sdxl-teacher
# Only the toy world's model ids, data, schedule and intervals are set here;
# tests/test_config_parity.py checks that nothing else differs.
_base_ = [
    '../ssd_1b/ssd_1b_distill_from_sdxl.py',
    '../_base_/schedules/toy_distill.py',
    '../_base_/datasets/toy_shapes_shards.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    student=dict(model=base_model),
    # fp32, as the main job (configs/toy/ssd_1b_distill_toy.py)
    teacher=dict(model=base_model, dtype=None))
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None)
train_dataloader = {{_base_.toy_shards.train_dataloader}}
train_pipeline = {{_base_.toy_shards.train_dataloader.dataset.pipeline}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
# Samples of the landscape bucket: the student keeps the multi-aspect
# ability the shards teach.
custom_hooks = [
    dict(_base_.toy.custom_hooks[0], height=32, width=48),
    dict(type='DiffusersExportHook'),
]
test_cfg = dict(
    teacher=True,
    sampling=dict(num_inference_steps=20, guidance_scale=4.0, height=32,
                  width=48))
