# DeepSpeed ZeRO stage 2 with the optimizer states (and the fp32 master
# weights DeepSpeed keeps for bf16 training) in CPU memory: the GPU holds the
# bf16 weights and gradients only, and the optimizer steps on the CPU
# (DeepSpeed's CPUAdam). pin_memory makes the GPU<->CPU copies asynchronous.
# Same use as deepspeed_zero2.py (DiffusionFlexibleRunner,
# DeepSpeedOptimWrapper); needs `pip install deepspeed` and GPUs; validated as
# a config only (docs/reliability.md).
_base_ = ['./deepspeed_zero2.py']
strategy = dict(
    zero_optimization=dict(
        offload_optimizer=dict(device='cpu', pin_memory=True)))
