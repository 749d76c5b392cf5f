# Toy twin of configs/stable_diffusion_xl/stable_diffusion_xl_pokemon_blip.py
# (docs/distill.md, "Toy twins"): trains the toy SDXL-topology UNet from
# scratch on the toy shapes, and builds the toy distillation teacher
# (`diffkd-toy/sdxl-teacher`) on first use. Only the toy world's model ids,
# data, schedule and intervals are set here; tests/test_config_parity.py
# checks that nothing else differs.
_base_ = [
    '../stable_diffusion_xl/stable_diffusion_xl_pokemon_blip.py',
    '../_base_/schedules/toy_finetune.py',
]
# fp32, without gradient checkpointing: this run is the first part of the
# README's main job on a fresh machine (10 minutes on 2 CPU cores), and
# bf16 is 4-5x slower on a CPU without bf16 arithmetic
# (docs/performance.md). tests/test_engine/test_twin_precision.py trains
# this twin with the real config's precision too.
model = dict(model='diffkd-toy/sdxl', gradient_checkpointing=False)
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None)
train_dataloader = {{_base_.toy.train_dataloader}}
train_pipeline = {{_base_.toy.train_dataloader.dataset.pipeline}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = [
    *_base_.toy.custom_hooks,
    dict(type='TrainableEMAHook', momentum=_base_.toy.ema_momentum),
]
