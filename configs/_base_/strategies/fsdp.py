# Fully sharded data parallel through DiffusionFlexibleRunner (mmengine's
# FlexibleRunner reading checkpoints as data): a config using this base sets
# runner_type = 'DiffusionFlexibleRunner' itself (default_runtime.py sets
# DiffusionRunner, and mmengine allows a key in one base only).
# DiffusionFSDP shards the trainable student only: the frozen teacher, VAE
# and text encoders are FSDP ignored_modules, whole on every rank (never in
# a flat parameter with trainable weights). Gradient clipping uses FSDP's
# norm over all shards. Launch as any distributed run:
#   tools/dist_train.sh CONFIG 8
# Checkpoints hold the full state dict, gathered on rank 0 and offloaded to
# the CPU (resumable on any number of GPUs). Not supported with FSDP: the
# TrainableEMAHook (its average would be per-shard).
# 'diffkd.': the flexible runner builds its strategy before default_scope
# applies (runner_type is set by the configs using this base).
strategy = dict(
    type='diffkd.DiffusionFSDPStrategy',
    model_wrapper=dict(
        type='diffkd.DiffusionFSDP',
        use_orig_params=True,
        sharding_strategy='FULL_SHARD',
        # one FSDP unit per block of >= 1e7 parameters (UNet blocks)
        auto_wrap_policy=dict(
            type='size_based_auto_wrap_policy', min_num_params=int(1e7))),
    state_dict_cfg=dict(
        state_dict_type='FULL_STATE_DICT',
        state_dict_config=dict(
            type='FullStateDictConfig', offload_to_cpu=True,
            rank0_only=True),
        optim_state_dict_config=dict(
            type='FullOptimStateDictConfig', offload_to_cpu=True,
            rank0_only=True)))
