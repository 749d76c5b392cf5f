from .formatting import PackInputs
from .processing import (CenterCrop, ComputeTimeIds, Normalize,
                         RandomCaptionDrop,
                         RandomCrop, RandomHorizontalFlip, Resize)

__all__ = [
    'CenterCrop', 'ComputeTimeIds', 'Normalize', 'PackInputs',
    'RandomCaptionDrop', 'RandomCrop',
    'RandomHorizontalFlip', 'Resize'
]
