from .hf_dataset import DataError, HFImageTextDataset, read_image
from .transforms import *  # noqa: F401,F403

__all__ = ['DataError', 'HFImageTextDataset', 'read_image']
