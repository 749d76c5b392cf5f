# The toy SSD-1B distillation under FSDP (DiffusionFlexibleRunner), sized
# for CPUs: 2 processes with gloo run it in the test suite
#   torchrun --nproc_per_node 2 tools/train.py \
#       configs/toy/ssd_1b_distill_fsdp_toy.py --launcher pytorch
# (or tools/dist_train.sh configs/toy/ssd_1b_distill_fsdp_toy.py 2).
_base_ = [
    './ssd_1b_distill_toy.py',
    '../_base_/strategies/fsdp.py',
]
runner_type = 'DiffusionFlexibleRunner'
strategy = dict(
    # On CPUs the full state dict stays where it is: offloading CPU tensors
    # "to the CPU" crashes FSDP's gather in torch 2.13 (SIGSEGV).
    state_dict_cfg=dict(
        state_dict_config=dict(offload_to_cpu=False),
        optim_state_dict_config=dict(offload_to_cpu=False)))
