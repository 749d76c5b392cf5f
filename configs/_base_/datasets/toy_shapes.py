# The toy world's captioned shapes (32 px), built on first use in
# $DIFFKD_HOME and read through the same imagefolder loader as user data.
train_pipeline = [
    dict(type='Resize', size=32),
    dict(type='RandomCrop', size=32),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandomCaptionDrop', prob=0.1),
    dict(type='ComputeTimeIds'),
    dict(type='Normalize'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
]
train_dataloader = dict(
    # The toy step time is overhead-bound: a big batch is nearly free.
    batch_size=64,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='default_collate'),
    dataset=dict(
        type='HFImageTextDataset',
        dataset='diffkd-toy/shapes',
        image_column='image',
        caption_column='text',
        pipeline=train_pipeline))
