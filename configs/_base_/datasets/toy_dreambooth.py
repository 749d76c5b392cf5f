# The toy DreamBooth subject: five photos of a red ring ("a sks circle"),
# with prior preservation on "a circle" (class images generated once by the
# base model and cached in $DIFFKD_HOME/class_images).
train_pipeline = [
    dict(type='ResizeShortEdge', size=32),
    dict(type='RandomCropWithCoords', size=32),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ComputeTimeIds'),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    # Instance rows, then class rows, along the batch axis. (The Runner
    # looks collate functions up in mmengine's root registry, hence the
    # scope prefix.)
    collate_fn=dict(type='diffkd.dreambooth_collate'),
    dataset=dict(
        type='DreamBoothDataset',
        instance_data='diffkd-toy/sks-circle',
        instance_prompt='a sks circle',
        class_prompt='a circle',
        num_class_images=32,
        class_image_generation=dict(
            model='diffkd-toy/sdxl-teacher',
            num_inference_steps=20,
            guidance_scale=4.0,
            batch_size=8),
        pipeline=train_pipeline))
