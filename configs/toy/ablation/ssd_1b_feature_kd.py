# Toy ablation, SSD-1B student of the toy SDXL teacher:
# (c) task + output KD + feature KD on SSD-1B's layer outputs (the published recipe).
# It also fixes what all four runs of this ablation share: the student
# (initialised from the teacher), data, seed and iteration budget.
_base_ = '../ssd_1b_distill_toy.py'
model = dict(features='layers', loss_weights=dict(task=1.0, output=0.5, feature=0.5))
max_iters = 150
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
         eta_min=5e-5)
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
custom_hooks = [dict(type='DiffusersExportHook')]
randomness = dict(seed=0)
