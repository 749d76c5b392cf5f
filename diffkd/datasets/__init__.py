from .dreambooth import (DreamBoothDataset, dreambooth_collate,
                         generate_class_images)
from .hf_dataset import HFImageTextDataset
from .image_io import (DataError, ImageReader, OversizedImageError,
                       read_image)
from .latent_cache import (CachedLatentDataset, StaleCacheError,
                           fill_latent_cache)
from .prompts import PromptDataset, read_prompt_file
from .transforms import *  # noqa: F401,F403

__all__ = [
    'CachedLatentDataset', 'StaleCacheError', 'fill_latent_cache',
    'DataError', 'DreamBoothDataset', 'HFImageTextDataset', 'ImageReader',
    'OversizedImageError', 'PromptDataset',
    'read_image', 'read_prompt_file',
    'dreambooth_collate', 'generate_class_images'
]
