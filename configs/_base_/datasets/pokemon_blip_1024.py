# A captioned hub dataset at SDXL resolution; point `dataset` at a local
# imagefolder (images + metadata.jsonl) to train on your own data.
train_pipeline = [
    dict(type='ResizeShortEdge', size=1024),
    dict(type='RandomCropWithCoords', size=1024),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ComputeTimeIds'),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
]
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='HFImageTextDataset',
        dataset='lambdalabs/pokemon-blip-captions',
        image_column='image',
        caption_column='text',
        pipeline=train_pipeline))
