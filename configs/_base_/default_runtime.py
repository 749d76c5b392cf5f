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
    # Validation scalars at the iteration they were taken (mmengine's
    # default files them under the epoch, always 0 in iteration-based runs).
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # CheckpointHook that writes atomically and removes old checkpoints
    # only once the new one is safe (docs/reliability.md).
    checkpoint=dict(
        type='SafeCheckpointHook', interval=1000, by_epoch=False,
        max_keep_ckpts=3),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    # Random generators: in checkpoints, restored exactly on resume (after
    # mmengine's dataloader fast-forward), per rank, untouched by validation.
    random_state=dict(type='RandomStateHook'),
    # Streaming datasets: the stream's position in every checkpoint, so
    # --resume goes on where it stopped (no-op for map-style datasets).
    stream_position=dict(type='StreamPositionHook'),
    # SIGTERM/SIGINT: checkpoint at the end of the iteration, exit 143/130.
    signal=dict(type='SignalCheckpointHook'),
    # NaN/inf loss: reports the steps optim_wrapper.nonfinite ('stop' |
    # 'skip' | 'off') kept out of the weights, and stops the run.
    nonfinite=dict(type='NonFiniteLossHook'),
)

# Local images always; tools/train.py adds TensorBoard when it is installed.
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)
# Used by distributed runs only: DDP over trainable weights, frozen teacher,
# VAE and text encoders neither broadcast nor in gradient buckets. Named
# with its scope: mmengine's Runner looks wrappers up outside default_scope.
model_wrapper_cfg = dict(type='diffkd.DiffusionDDP')
# Losses are logged as means over the last 10 iterations (mmengine's
# smoothing), but held-out losses (val/...) as each validation's own value:
# averaged, they would mix up to 10 validations. The console line carries
# the loss and its terms; per-pair feature KD values (kd_feat/*) go to
# vis_data/scalars.json and TensorBoard only.
log_processor = dict(
    type='DiffusionLogProcessor',
    by_epoch=False,
    mean_pattern=r'^(?!val/).*(loss|time|data_time|grad_norm).*')
log_level = 'INFO'
load_from = None
resume = False
# Several processes: rank r > 0 reseeds with seed + r before the first
# iteration (RandomStateHook), so ranks draw different noise while a
# single process is unchanged; mmengine's diff_rank_seed stays off (it would
# also reseed the data sampler).
randomness = dict(seed=42)
