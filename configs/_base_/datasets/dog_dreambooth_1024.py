# DreamBooth on the five dog photos of diffusers/dog-example, with prior
# preservation: 100 images of "a photo of dog" are generated once by the
# base model (cached under $DIFFKD_HOME/class_images) when class_data_dir
# holds fewer. Point instance_data at a folder of your own photos to train
# another subject.
train_pipeline = [
    dict(type='ResizeShortEdge', size=1024),
    dict(type='RandomCropWithCoords', size=1024),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ComputeTimeIds'),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
]
train_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    collate_fn=dict(type='diffkd.dreambooth_collate'),
    dataset=dict(
        type='DreamBoothDataset',
        instance_data='diffusers/dog-example',
        instance_prompt='a photo of sks dog',
        class_prompt='a photo of dog',
        num_class_images=100,
        class_image_generation=dict(
            model='stabilityai/stable-diffusion-xl-base-1.0',
            num_inference_steps=25,
            guidance_scale=7.5,
            batch_size=4),
        pipeline=train_pipeline))
