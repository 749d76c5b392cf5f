# configs/toy/ssd_1b_distill_toy.py reading precomputed VAE latents and
# text embeddings: a step runs no VAE and no text encoder. The cache holds 4
# random crops/flips per image (with the time_ids each was made with) and is
# filled on first use, or beforehand with
#   python tools/cache_latents.py configs/toy/ssd_1b_distill_cached_toy.py
_base_ = ['./ssd_1b_distill_toy.py']
_source_pipeline = [
    dict(type='ResizeShortEdge', size=32),
    dict(type='RandomCropWithCoords', size=32),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ComputeTimeIds'),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
]
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='CachedLatentDataset',
        cache_dir='work_dirs/latent_cache/toy_shapes_sdxl_teacher',
        encoder=dict(type='StableDiffusionXL', model='diffkd-toy/sdxl-teacher'),
        source=dict(
            type='HFImageTextDataset',
            dataset='diffkd-toy/shapes',
            image_column='image',
            caption_column='text',
            pipeline=_source_pipeline),
        variants=4,
        caption_drop=0.1,
        auto_fill=True))
