# diffusers/dog-example at SD-1.x resolution (see dog_dreambooth_1024.py).
_base_ = './dog_dreambooth_1024.py'
train_pipeline = [
    dict(type='ResizeShortEdge', size=512),
    dict(type='RandomCropWithCoords', size=512),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text']),
]
train_dataloader = dict(
    batch_size=2,
    dataset=dict(
        class_image_generation=dict(model='runwayml/stable-diffusion-v1-5'),
        pipeline=train_pipeline))
