# DeepSpeed ZeRO stage 2 (optimizer states and gradients partitioned)
# through DiffusionFlexibleRunner (mmengine's FlexibleRunner; a config using
# this base sets runner_type = 'DiffusionFlexibleRunner' itself). Needs
# `pip install deepspeed` and GPUs; not run in diffkd's CI (validated as a
# config only, see docs/reliability.md). Frozen parameters (teacher, VAE,
# text encoders) are not in the optimizer and are left out of checkpoints.
# A config using it sets optim_wrapper=dict(_delete_=True,
# type='DeepSpeedOptimWrapper', optimizer=...): DeepSpeed steps, clips and
# scales itself. The micro batch size is the train dataloader's (the runner
# sets it).
strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(
        stage=2,
        allgather_partitions=True,
        allgather_bucket_size=int(2e8),
        reduce_scatter=True,
        reduce_bucket_size='auto',
        overlap_comm=True,
        contiguous_gradients=True),
    bf16=dict(enabled=True),
    gradient_clipping=1.0,
    gradient_accumulation_steps=1,
    exclude_frozen_parameters=True)
