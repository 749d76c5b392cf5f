"""Packing: the model's inputs as tensors, metadata alongside."""
from typing import Dict, Sequence

import numpy as np
import torch
from mmcv.transforms import BaseTransform

from diffkd.registry import TRANSFORMS


@TRANSFORMS.register_module()
class PackInputs(BaseTransform):
    """Put ``keys`` into ``inputs`` (HWC images become CHW float tensors) and
    ``meta_keys`` into ``data_samples``."""

    def __init__(self,
                 keys: Sequence[str] = ('img', 'text'),
                 meta_keys: Sequence[str] = ('sample_idx', 'ori_shape',
                                             'crop_top_left', 'flip')):
        self.keys = tuple(keys)
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: Dict) -> Dict:
        inputs = {}
        for key in self.keys:
            if key not in results:
                raise KeyError(
                    f'PackInputs: {key!r} is not in the sample (has '
                    f'{sorted(results)}); add the transform that makes it')
            value = results[key]
            if key == 'img':
                if value.dtype == np.uint8:
                    raise TypeError('PackInputs: img is still uint8; add '
                                    'NormalizeRGB before PackInputs')
                value = torch.from_numpy(
                    np.ascontiguousarray(value.transpose(2, 0, 1)))
            inputs[key] = value
        meta = {k: results[k] for k in self.meta_keys if k in results}
        return dict(inputs=inputs, data_samples=meta)
