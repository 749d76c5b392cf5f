default_scope = 'diffkd'

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo when there is no CUDA device.
    dist_cfg=dict(backend='nccl'),
)

default_hooks = dict(
    # Loss scalars reach the host once per log interval, not every step.
    runtime_info=dict(type='DeferredRuntimeInfoHook'),
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type='CheckpointHook', interval=1000, by_epoch=False,
        max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    random_state=dict(type='RandomStateHook'),
)

# Local images always; tools/train.py adds TensorBoard when it is installed.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
randomness = dict(seed=42)
