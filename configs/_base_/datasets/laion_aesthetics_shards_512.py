# LAION-Aesthetics V2 6.5+ (BK-SDM's 212k pairs) at SD-1.x resolution from
# local WebDataset shards, with SD-1.x aspect-ratio buckets (about 512x512,
# 64-px steps, up to 2:1). Built like laion_aesthetics_shards_1024.py:
#   img2dataset --url_list laion_aesthetics_6.5plus.parquet \
#     --input_format parquet --url_col URL --caption_col TEXT \
#     --output_format webdataset --number_sample_per_shard 1000 \
#     --image_size 1024 --resize_mode keep_ratio --resize_only_if_bigger \
#     --min_image_size 256 --output_folder data/laion_aesthetics_6.5plus
_base_ = './laion_aesthetics_shards_1024.py'
train_pipeline = [
    dict(type='BucketResizeCrop', buckets='sd'),
    dict(type='RandomHorizontalFlip', prob=0.5),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text'],
         meta_keys=['key', 'ori_shape', 'crop_top_left', 'bucket', 'flip']),
]
train_dataloader = dict(
    dataset=dict(
        shards='data/laion_aesthetics_6.5plus/*.tar',
        batch_size=4,
        pipeline=train_pipeline))
