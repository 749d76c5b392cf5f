# The memory switches that put an SDXL-family distillation on one 24 GB
# card at batch 1, 1024 px (docs/performance.md, "SDXL-family distillation
# on 24 GB"): a config inheriting its real distillation and this file sets
# model, optim_wrapper, train_dataloader and default_hooks from
# `sdxl_24gb` (configs/ssd_1b/ssd_1b_distill_from_sdxl_24gb.py).
# Teacher in bf16 and gradient checkpointing; bitsandbytes' 8-bit AdamW
# (`pip install bitsandbytes`); a cache of VAE latents and text embeddings,
# so that no VAE or text encoder is on the GPU. The cache holds SDXL's VAE
# and text encoders' outputs, the same for every SDXL student; fill it once
# from an image folder with captions (e.g. the shards' images extracted
# with `tar -xf`, and a metadata.jsonl) with
#   python tools/cache_latents.py CONFIG
_source_pipeline = [
    dict(type='BucketResizeCrop', buckets='sdxl'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ComputeTimeIds'),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
]
sdxl_24gb = dict(
    model=dict(
        student=dict(gradient_checkpointing=True),
        teacher=dict(dtype='bfloat16')),
    optim_wrapper=dict(
        optimizer=dict(_delete_=True, type='AdamW8bit', lr=1e-5,
                       weight_decay=1e-2)),
    # One image per step: each may come from another aspect-ratio bucket.
    train_dataloader=dict(
        _delete_=True,
        batch_size=1,
        num_workers=2,
        persistent_workers=True,
        sampler=dict(type='InfiniteSampler', shuffle=True),
        collate_fn=dict(type='default_collate'),
        dataset=dict(
            type='CachedLatentDataset',
            cache_dir='work_dirs/latent_cache/sdxl_1024',
            encoder=dict(type='StableDiffusionXL',
                         model='stabilityai/stable-diffusion-xl-base-1.0'),
            source=dict(
                type='HFImageTextDataset',
                dataset='data/sdxl_images',
                image_column='image',
                caption_column='text',
                pipeline=_source_pipeline),
            variants=1,
            caption_drop=0.1)),
    default_hooks=dict(
        sampler_seed=dict(_delete_=True, type='DistSamplerSeedHook')))
