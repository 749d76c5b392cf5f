default_scope = 'diffkd'
# mmengine's Runner reading checkpoints as data: weights only, an embedded
# config never executed (docs/reliability.md, "Trust model").
runner_type = 'DiffusionRunner'

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
    # CheckpointHook that writes atomically and removes old checkpoints
    # only once the new one is safe (docs/reliability.md).
    checkpoint=dict(
        type='SafeCheckpointHook', interval=1000, by_epoch=False,
        max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    random_state=dict(type='RandomStateHook'),
    # Streaming datasets: the stream's position in every checkpoint, so
    # --resume goes on where it stopped (no-op for map-style datasets).
    stream_position=dict(type='StreamPositionHook'),
    # SIGTERM/SIGINT: checkpoint at the end of the iteration, exit 143/130.
    signal=dict(type='SignalCheckpointHook'),
    # NaN/inf loss: the step is never applied; mode='stop' | 'skip' | 'off'.
    nonfinite=dict(type='NonFiniteLossHook', mode='stop'),
)

# Local images always; tools/train.py adds TensorBoard when it is installed.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
# Used by distributed runs only: DDP over trainable weights, frozen teacher,
# VAE and text encoders neither broadcast nor in gradient buckets. Named
# with its scope: mmengine's Runner looks wrappers up outside default_scope.
model_wrapper_cfg = dict(type='diffkd.DiffusionDDP')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
# Several processes: rank r > 0 reseeds with seed + r before the first
# iteration (diffkd/engine/loops.py), so ranks draw different noise while a
# single process is unchanged; mmengine's diff_rank_seed stays off (it would
# also reseed the data sampler).
randomness = dict(seed=42)
