"""Image transforms (mmcv-based). Images are RGB HWC uint8 arrays under
``results['img']``; every geometric transform records what it did so SDXL's
size and crop conditioning always describe the pixels the model sees.

Named apart from mmcv's ``Resize``, ``CenterCrop`` and ``Normalize``, which
take other arguments (and whose names a diffkd config may still use to get
mmcv's classes); configs written for diffkd's former classes of those
names are stopped with the new name (``diffkd.registry._RENAMED``).
"""
import random
from typing import Dict, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform

from diffkd.registry import TRANSFORMS


def _pair(size: Union[int, Sequence[int]]) -> Tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


@TRANSFORMS.register_module()
class ResizeShortEdge(BaseTransform):
    """Resize so the shorter side is ``size`` (int, keeping the aspect
    ratio), or to exactly ``(h, w)``. Records ``resized_shape``; keeps
    ``ori_shape``."""

    def __init__(self, size: Union[int, Sequence[int]],
                 interpolation: str = 'bilinear'):
        self.size = size
        self.interpolation = interpolation

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        h, w = img.shape[:2]
        results.setdefault('ori_shape', (h, w))
        if isinstance(self.size, int):
            scale = self.size / min(h, w)
            new_h, new_w = round(h * scale), round(w * scale)
        else:
            new_h, new_w = _pair(self.size)
        if (new_h, new_w) != (h, w):
            img = mmcv.imresize(
                img, (new_w, new_h), interpolation=self.interpolation)
        results['img'] = img
        results['resized_shape'] = (new_h, new_w)
        return results


class _Crop(BaseTransform):

    def __init__(self, size: Union[int, Sequence[int]]):
        self.size = _pair(size)

    def offsets(self, h: int, w: int) -> Tuple[int, int]:
        raise NotImplementedError

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        h, w = img.shape[:2]
        ch, cw = self.size
        if ch > h or cw > w:
            raise ValueError(
                f'{type(self).__name__}: crop {self.size} is larger than the '
                f'image {(h, w)}; resize first')
        top, left = self.offsets(h, w)
        results['img'] = img[top:top + ch, left:left + cw]
        results.setdefault('resized_shape', (h, w))
        results['crop_top_left'] = (top, left)
        results['img_shape'] = (ch, cw)
        return results


@TRANSFORMS.register_module()
class CenterCropWithCoords(_Crop):
    """Crop the centre; records ``crop_top_left`` (top, left)."""

    def offsets(self, h: int, w: int) -> Tuple[int, int]:
        return (h - self.size[0]) // 2, (w - self.size[1]) // 2


@TRANSFORMS.register_module()
class RandomCropWithCoords(_Crop):
    """Crop at a random place; records ``crop_top_left`` (top, left)."""

    def offsets(self, h: int, w: int) -> Tuple[int, int]:
        return (random.randint(0, h - self.size[0]),
                random.randint(0, w - self.size[1]))


@TRANSFORMS.register_module()
class RandomHorizontalFlip(BaseTransform):
    """Flip with probability ``prob``. The recorded crop's left edge is moved
    to where the crop lies in the flipped image, so crop conditioning stays
    true to the pixels."""

    def __init__(self, prob: float = 0.5):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.prob = prob

    def transform(self, results: Dict) -> Dict:
        flip = random.random() < self.prob
        results['flip'] = flip
        if not flip:
            return results
        results['img'] = mmcv.imflip(results['img'], direction='horizontal')
        if 'crop_top_left' in results:
            top, left = results['crop_top_left']
            crop_w = results['img'].shape[1]
            resized_w = results['resized_shape'][1]
            results['crop_top_left'] = (top, resized_w - left - crop_w)
        return results


@TRANSFORMS.register_module()
class ComputeTimeIds(BaseTransform):
    """SDXL micro-conditioning: ``time_ids`` = original size (h, w) + crop
    top-left (top, left) + target size (h, w)."""

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        ori = results.get('ori_shape', img.shape[:2])
        crop = results.get('crop_top_left', (0, 0))
        target = img.shape[:2]
        results['time_ids'] = torch.tensor(
            [*ori, *crop, *target], dtype=torch.float32)
        return results


@TRANSFORMS.register_module()
class NormalizeRGB(BaseTransform):
    """``(img - mean) / std`` per channel of the RGB image to float32 (no
    channel reordering); SD uses 127.5/127.5, which maps uint8 pixels to
    [-1, 1]."""

    def __init__(self,
                 mean: Sequence[float] = (127.5, 127.5, 127.5),
                 std: Sequence[float] = (127.5, 127.5, 127.5)):
        self.mean = np.array(mean, dtype=np.float32)
        self.std = np.array(std, dtype=np.float32)

    def transform(self, results: Dict) -> Dict:
        results['img'] = mmcv.imnormalize(
            results['img'].astype(np.float32), self.mean, self.std,
            to_rgb=False)
        return results


@TRANSFORMS.register_module()
class RandomCaptionDrop(BaseTransform):
    """Replace the caption by ``''`` with probability ``prob``, so the model
    also learns the unconditional prediction that classifier-free guidance
    needs."""

    def __init__(self, prob: float = 0.1):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f'prob must be in [0, 1], got {prob}')
        self.prob = prob

    def transform(self, results: Dict) -> Dict:
        if random.random() < self.prob:
            results['text'] = ''
        return results
