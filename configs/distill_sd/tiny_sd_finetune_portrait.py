# Full fine-tune of tiny-sd on portraits, with the hyper-parameters of
# Segmind's blog: lr 1e-4, batch 32 (8 per step x 4 accumulated), 768 px,
# fp16 mixed precision. Their 7k Realistic-Vision portraits are not public:
# put your own images with captions (metadata.jsonl) in data/portraits.
_base_ = [
    '../_base_/models/stable_diffusion_v15.py',
    '../_base_/datasets/pokemon_blip_512.py',
    '../_base_/schedules/adamw_1e-5_10k.py',
    '../_base_/default_runtime.py',
]
model = dict(model='segmind/tiny-sd')
train_pipeline = [
    dict(type='ResizeShortEdge', size=768),
    dict(type='RandomCropWithCoords', size=768),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text']),
]
train_dataloader = dict(
    batch_size=8,
    dataset=dict(dataset='data/portraits', pipeline=train_pipeline))
optim_wrapper = dict(
    dtype='float16',
    accumulative_counts=4,
    optimizer=dict(lr=1e-4))
train_cfg = dict(max_iters=131000 * 4)  # the blog's 131k optimizer steps
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['Portrait of a pretty girl', 'Portrait of an old man'],
        interval=5000),
    dict(type='DiffusersExportHook', interval=5000),
]
default_hooks = dict(checkpoint=dict(interval=5000))
