# Toy twin of configs/stable_diffusion_xl/stable_diffusion_xl_lora_pokemon_blip.py
# (docs/distill.md, "Toy twins"): LoRA text-to-image on the toy SDXL
# teacher (peft adapters on the UNet's attention projections); writes
# final/lora/pytorch_lora_weights.safetensors for diffusers'
# load_lora_weights. Only the toy world's model ids, data, schedule and
# intervals are set here; tests/test_config_parity.py checks that nothing
# else differs.
_base_ = [
    '../stable_diffusion_xl/stable_diffusion_xl_lora_pokemon_blip.py',
    '../_base_/schedules/toy_lora.py',
]
model = dict(model='diffkd-toy/sdxl-teacher')
# fp32 on the CPU: bf16 is 4-5x slower on a CPU without bf16 arithmetic
# (docs/performance.md) and docs/results.md times this run.
# tests/test_engine/test_twin_precision.py trains this twin with the real
# config's precision too.
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
