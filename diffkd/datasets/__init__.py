from .buckets import (AspectRatioBuckets, BucketBatchSampler,
                      BucketResizeCrop)
from .dreambooth import (DreamBoothDataset, dreambooth_collate,
                         generate_class_images)
from .hf_dataset import HFImageTextDataset
from .image_io import (DataError, ImageReader, OversizedImageError,
                       read_image)
from .latent_cache import (CachedLatentDataset, StaleCacheError,
                           fill_latent_cache)
from .prompts import PromptDataset, read_prompt_file
from .shards import ShardError, WebDatasetShards, stream_collate
from .transforms import *  # noqa: F401,F403

__all__ = [
    'AspectRatioBuckets', 'BucketBatchSampler', 'BucketResizeCrop',
    'ShardError', 'WebDatasetShards', 'stream_collate',
    'CachedLatentDataset', 'StaleCacheError', 'fill_latent_cache',
    'DataError', 'DreamBoothDataset', 'HFImageTextDataset', 'ImageReader',
    'OversizedImageError', 'PromptDataset',
    'read_image', 'read_prompt_file',
    'dreambooth_collate', 'generate_class_images'
]
