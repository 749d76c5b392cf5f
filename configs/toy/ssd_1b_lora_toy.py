# Toy twin of configs/ssd_1b/ssd_1b_lora_pokemon_blip.py (docs/distill.md,
# "Toy twins"): LoRA on the distilled toy SSD-1B student (run
# ssd_1b_distill_toy.py first): distilled models train LoRAs faster than
# their teachers. Only the toy world's model ids, data, schedule and
# intervals are set here; tests/test_config_parity.py checks that nothing
# else differs.
_base_ = [
    '../ssd_1b/ssd_1b_lora_pokemon_blip.py',
    '../_base_/schedules/toy_lora.py',
]
model = dict(model='diffkd-toy/sdxl-teacher',
             unet='work_dirs/ssd_1b_distill_toy/final/unet')
# fp32 on the CPU, as configs/toy/sdxl_lora_toy.py (docs/results.md
# compares the two runs' speed).
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
