# Toy twin of configs/stable_diffusion/stable_diffusion_v15_pokemon_blip.py
# (docs/distill.md, "Toy twins"): the SD-1.5-topology twin of
# sdxl_finetune_toy.py; builds `diffkd-toy/sd15-teacher` on first use. Only
# the toy world's model ids, data, schedule and intervals are set here;
# tests/test_config_parity.py checks that nothing else differs.
_base_ = [
    '../stable_diffusion/stable_diffusion_v15_pokemon_blip.py',
    '../_base_/schedules/toy_finetune.py',
]
# fp32, without gradient checkpointing: this run builds the toy SD-1.5
# teacher of the BK-SDM and tiny-sd twins and of the KD ablation on first
# use, and bf16 is 4-5x slower on a CPU without bf16 arithmetic
# (docs/performance.md). tests/test_engine/test_twin_precision.py trains
# this twin with the real config's precision too.
model = dict(model='diffkd-toy/sd15', gradient_checkpointing=False)
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None)
train_dataloader = {{_base_.toy.train_dataloader}}
train_pipeline = {{_base_.toy.train_dataloader.dataset.pipeline}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = {{_base_.toy.custom_hooks}}
