# The toy world's multi-aspect shapes (square 32x32, landscape 32x48 and
# portrait 48x32 buckets) streamed from WebDataset shards, batched per
# bucket. Build them with
#   python tools/build_toy_world.py --only shapes-shards
# The same dataset as configs/_base_/datasets/laion_aesthetics_shards_1024.py
# at toy size: the toy VAE and UNet downsample 4x each, so 16-px steps.
train_pipeline = [
    dict(type='BucketResizeCrop', buckets='toy'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='RandomCaptionDrop', prob=0.1),
    dict(type='ComputeTimeIds'),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids'],
         meta_keys=['key', 'ori_shape', 'crop_top_left', 'bucket', 'flip']),
]
train_dataloader = dict(
    # The dataset makes the batches (one bucket each) in its workers.
    batch_size=None,
    num_workers=0,
    sampler=None,
    collate_fn=dict(type='diffkd.stream_collate'),
    dataset=dict(
        type='WebDatasetShards',
        shards='diffkd-toy/shapes-shards/{00000..00015}.tar',
        batch_size=32,
        shuffle_buffer=256,
        pipeline=train_pipeline))

test_dataloader = dict(
    batch_size=10,
    num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    collate_fn=dict(type='pseudo_collate'),
    dataset=dict(type='PromptDataset', prompts='diffkd-toy', seed=0))
test_cfg = dict(
    type='DiffusionTestLoop',
    # a landscape bucket: the student samples non-square images
    sampling=dict(num_inference_steps=20, guidance_scale=4.0, height=32,
                  width=48))
test_evaluator = [
    dict(type='ToyPromptScore'),
    dict(type='TeacherStudentAgreement'),
]
