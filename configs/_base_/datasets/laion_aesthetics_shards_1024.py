# LAION-Aesthetics V2 at SDXL resolution, streamed from local WebDataset
# shards with SDXL's aspect-ratio buckets (about 1024x1024 pixels, 64-px
# steps, 4:1 to 1:4); SDXL's original size, crop and target size are those
# of each image (img2dataset's original_width/height when it resized).
#
# Build the shards with img2dataset from the parquet URL list of the subset
# (e.g. LAION-Aesthetics V2 6+ for KOALA):
#   img2dataset --url_list laion_aesthetics_6plus.parquet \
#     --input_format parquet --url_col URL --caption_col TEXT \
#     --output_format webdataset --number_sample_per_shard 1000 \
#     --image_size 2048 --resize_mode keep_ratio --resize_only_if_bigger \
#     --min_image_size 512 --output_folder data/laion_aesthetics_6plus
# or from an imagefolder with
#   python tools/dataset_converters/images_to_shards.py SRC OUT
# docs/data.md: bucket settings, workers per GPU, resuming.
train_pipeline = [
    dict(type='BucketResizeCrop', buckets='sdxl'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='ComputeTimeIds'),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids'],
         meta_keys=['key', 'ori_shape', 'crop_top_left', 'bucket', 'flip']),
]
train_dataloader = dict(
    # The dataset makes the batches, one bucket each, in its workers;
    # batch_size below is per GPU.
    batch_size=None,
    sampler=None,
    num_workers=4,
    persistent_workers=True,
    collate_fn=dict(type='diffkd.stream_collate'),
    dataset=dict(
        type='WebDatasetShards',
        # every .tar img2dataset wrote (a glob: the count need not be known)
        shards='data/laion_aesthetics_6plus/*.tar',
        batch_size=2,
        shuffle_buffer=2000,
        pipeline=train_pipeline))
