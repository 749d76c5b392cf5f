_base_ = './pokemon_blip_1024.py'
train_pipeline = [
    dict(type='Resize', size=512),
    dict(type='RandomCrop', size=512),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='Normalize'),
    dict(type='PackInputs', keys=['img', 'text']),
]
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
