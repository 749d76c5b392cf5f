# Toy ablation, BK-SDM-small student of the toy SD-1.5 teacher:
# (c) task + output KD + feature KD on BK-SDM's block outputs (the published recipe).
# It also fixes what all four runs of this ablation share: the student
# (initialised from the teacher), data, seed and iteration budget.
_base_ = '../bk_sdm_small_distill_toy.py'
model = dict(
    features='bk_sdm',
    loss_weights=dict(task=1.0, output=1.0, feature=1.0),
    # fp32, as the SSD-1B runs (configs/toy/ssd_1b_distill_toy.py): the
    # ablation's eight runs share one CPU budget.
    teacher=dict(dtype=None))
optim_wrapper = dict(dtype=None)
max_iters = 150
train_cfg = dict(max_iters=max_iters)
param_scheduler = [
    dict(type='CosineAnnealingLR', by_epoch=False, begin=0, end=max_iters,
         eta_min=5e-5)
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
custom_hooks = [dict(type='DiffusersExportHook')]
randomness = dict(seed=0)
