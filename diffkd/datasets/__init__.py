from .dreambooth import (DreamBoothDataset, dreambooth_collate,
                         generate_class_images)
from .hf_dataset import DataError, HFImageTextDataset, read_image
from .transforms import *  # noqa: F401,F403

__all__ = [
    'DataError', 'DreamBoothDataset', 'HFImageTextDataset', 'read_image',
    'dreambooth_collate', 'generate_class_images'
]
