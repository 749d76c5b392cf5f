# DeepSpeed ZeRO stage 3 (parameters partitioned too) through
# DiffusionFlexibleRunner. Needs `pip install deepspeed` and GPUs; not run in
# diffkd's CI (validated as a config only, see docs/reliability.md).
# ZeRO-3 partitions every parameter handed to deepspeed.initialize, the
# frozen teacher included (in its own partitions: frozen parameters are in
# no optimizer group); checkpoints leave frozen parameters out.
_base_ = ['./deepspeed_zero2.py']
strategy = dict(
    zero_optimization=dict(
        _delete_=True,
        stage=3,
        overlap_comm=True,
        contiguous_gradients=True,
        reduce_bucket_size='auto',
        stage3_prefetch_bucket_size='auto',
        stage3_param_persistence_threshold='auto',
        stage3_gather_16bit_weights_on_model_save=True))
