_base_ = './pokemon_blip_1024.py'
train_pipeline = [
    dict(type='ResizeShortEdge', size=512),
    dict(type='RandomCropWithCoords', size=512),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text']),
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
