from ..buckets import BucketResizeCrop
from .formatting import PackInputs
from .processing import (CenterCropWithCoords, ComputeTimeIds, NormalizeRGB,
                         RandomCaptionDrop, RandomCropWithCoords,
                         RandomHorizontalFlip, ResizeShortEdge)

__all__ = [
    'BucketResizeCrop', 'CenterCropWithCoords', 'ComputeTimeIds',
    'NormalizeRGB', 'PackInputs',
    'RandomCaptionDrop', 'RandomCropWithCoords', 'RandomHorizontalFlip',
    'ResizeShortEdge'
]
