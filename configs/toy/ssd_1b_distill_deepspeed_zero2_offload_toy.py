# The toy SSD-1B distillation under DeepSpeed ZeRO-2 with the optimizer
# states in CPU memory (DiffusionFlexibleRunner, mmengine's
# FlexibleRunner). DeepSpeed needs GPUs and `pip install deepspeed`: this
# config is validated in the test suite, not run (docs/reliability.md).
_base_ = [
    './ssd_1b_distill_toy.py',
    '../_base_/strategies/deepspeed_zero2_offload.py',
]
runner_type = 'DiffusionFlexibleRunner'
optim_wrapper = dict(
    _delete_=True,
    type='DeepSpeedOptimWrapper',
    optimizer=dict(type='AdamW', lr=5e-4, weight_decay=0.0))
