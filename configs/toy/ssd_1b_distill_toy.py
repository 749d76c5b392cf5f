# Toy twin of configs/ssd_1b/ssd_1b_distill_from_sdxl.py
# (docs/distill.md, "Toy twins"): the SSD1B recipe and its layer-level KD
# applied unchanged to the toy SDXL teacher (trained on first use with
# configs/toy/sdxl_finetune_toy.py), with the toy world's model ids, data,
# schedule and intervals; tests/test_config_parity.py checks that nothing
# else differs.
_base_ = [
    '../ssd_1b/ssd_1b_distill_from_sdxl.py',
    '../_base_/schedules/toy_distill.py',
]
base_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    student=dict(model=base_model),
    # fp32 teacher and optimizer: the README's main job must finish within
    # 10 minutes on 2 CPU cores, and bf16 is 4-5x slower on a CPU without
    # bf16 arithmetic (docs/performance.md).
    # tests/test_engine/test_twin_precision.py trains this twin with the
    # real config's bf16 too.
    teacher=dict(model=base_model, dtype=None))
optim_wrapper = dict(_base_.toy.optim_wrapper, dtype=None)
# Fast by default: the step reads VAE latents and text embeddings cached
# from the toy shapes (2 random flips per image, caption dropout at training
# time), so no VAE and no text encoder run in it (docs/performance.md,
# "Fast by default"). The cache is filled on first use, once, in
# $DIFFKD_HOME/latent_cache/; configs/toy/ssd_1b_distill_uncached_toy.py
# encodes every step instead.
train_dataloader = dict(
    _base_.toy.train_dataloader,
    dataset=dict(
        type='CachedLatentDataset',
        encoder=dict(type='StableDiffusionXL', model=base_model),
        source=dict(
            _base_.toy.train_dataloader.dataset,
            pipeline=[
                t for t in _base_.toy.train_dataloader.dataset.pipeline
                if t.type != 'RandomCaptionDrop'
            ]),
        # 2 variants: filling the cache (2048 images x variants encodes) is
        # part of a first run's time
        variants=2,
        caption_drop=0.1,
        auto_fill=True))
train_pipeline = {{_base_.toy.train_dataloader.dataset.pipeline}}
train_cfg = {{_base_.toy.train_cfg}}
param_scheduler = {{_base_.toy.param_scheduler}}
default_hooks = {{_base_.toy.default_hooks}}
custom_hooks = {{_base_.toy.custom_hooks}}
# tools/test.py: the teacher samples the same prompts and seeds too
test_cfg = dict(teacher=True)
