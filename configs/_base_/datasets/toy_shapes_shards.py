# The toy world's multi-aspect shapes (square 32x32, landscape 32x48 and
# portrait 48x32 buckets) streamed from WebDataset shards, batched per
# bucket. Build them with
#   python tools/build_toy_world.py --only shapes-shards
# The same dataset as configs/_base_/datasets/laion_aesthetics_shards_1024.py
# at toy size: the toy VAE and UNet downsample 4x each, so 16-px steps.
# Values for a toy twin to assign (see ./toy_shapes.py, `toy`):
#   train_dataloader = {{_base_.toy_shards.train_dataloader}}
toy_shards = dict(
    train_dataloader=dict(
        # The dataset makes the batches (one bucket each) in its workers.
        batch_size=None,
        num_workers=0,
        persistent_workers=False,
        sampler=None,
        collate_fn=dict(type='diffkd.stream_collate'),
        dataset=dict(
            _delete_=True,
            type='WebDatasetShards',
            shards='diffkd-toy/shapes-shards/{00000..00015}.tar',
            batch_size=32,
            shuffle_buffer=256,
            pipeline=[
                dict(type='BucketResizeCrop', buckets='toy'),
                dict(type='RandomHorizontalFlip', prob=0.5),
                dict(type='RandomCaptionDrop', prob=0.1),
                dict(type='ComputeTimeIds'),
                dict(type='NormalizeRGB'),
                dict(type='PackInputs', keys=['img', 'text', 'time_ids'],
                     meta_keys=['key', 'ori_shape', 'crop_top_left',
                                'bucket', 'flip']),
            ])))
