"""Aspect-ratio buckets: train at many shapes, one shape per batch.

A bucket is a ``(height, width)`` whose area is at most the target area
(SD-1.x about 512², SDXL about 1024²) with both sides multiples of
``step`` (64 px: the VAE's 8x times the UNet's 8x). An image goes to the
bucket whose aspect ratio is nearest its own (in log ratio, so 2:1 and 1:2
are equally far from 1:1), is resized to *cover* the bucket and cropped to
it (:class:`BucketResizeCrop`); the transform records what it did, so
SDXL's ``original_size``, ``crops_coords_top_left`` and ``target_size``
(``ComputeTimeIds``) describe exactly that.

Batches are formed per bucket: :class:`BucketBatchSampler` for map-style
datasets, per-worker bucket buffers in
:class:`~diffkd.datasets.shards.WebDatasetShards`.
"""
import io
import math
import random
from collections import Counter
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import mmcv
from mmcv.transforms import BaseTransform
from torch.utils.data import Sampler

from diffkd.registry import DATA_SAMPLERS, TRANSFORMS

# SDXL's buckets (its paper, appendix) span 4:1 to 1:4 around 1024²;
# SD-1.x fine-tunes (NovelAI, kohya) use 512² with up to 2:1.
PRESETS: Dict[str, Dict] = {
    'sdxl': dict(area=1024 * 1024, step=64, max_ratio=4.0),
    'sd': dict(area=512 * 512, step=64, max_ratio=2.0),
    # Toy SDXL/SD: 4x VAE, 4x UNet -> 16 px; 32x32, 32x48 and 48x32.
    'toy': dict(area=40 * 40, step=16, max_ratio=2.0),
}

Size = Tuple[int, int]


class AspectRatioBuckets:
    """The buckets for a target area.

    Args:
        area: the most pixels a bucket holds (e.g. ``1024 * 1024``).
        step: both sides are multiples of it.
        max_ratio: long side / short side of the widest bucket.
    """

    def __init__(self, area: int, step: int = 64, max_ratio: float = 4.0):
        if step <= 0 or area < step * step:
            raise ValueError(f'buckets: area={area} must hold at least one '
                             f'{step}x{step} square (step={step})')
        if max_ratio < 1:
            raise ValueError(f'buckets: max_ratio is long side / short '
                             f'side, at least 1; got {max_ratio}')
        self.area, self.step, self.max_ratio = int(area), int(step), \
            float(max_ratio)
        side = int(math.isqrt(self.area)) // step * step
        sizes = {(side, side)}
        w = step
        while w * step <= self.area:
            h = self.area // w // step * step
            if h >= step and max(h, w) / min(h, w) <= max_ratio:
                sizes.add((h, w))
                sizes.add((w, h))
            w += step
        self.sizes: List[Size] = sorted(sizes, key=lambda s: s[1] / s[0])
        self._log_ratios = [math.log(w / h) for h, w in self.sizes]

    @classmethod
    def build(cls, cfg: Union[str, Dict, 'AspectRatioBuckets']
              ) -> 'AspectRatioBuckets':
        """From a preset name (``'sdxl'``, ``'sd'``, ``'toy'``), a dict of
        the arguments, or an instance."""
        if isinstance(cfg, AspectRatioBuckets):
            return cfg
        if isinstance(cfg, str):
            if cfg not in PRESETS:
                raise KeyError(f'unknown bucket preset {cfg!r}; known: '
                               f'{sorted(PRESETS)}, or give '
                               'dict(area=..., step=..., max_ratio=...)')
            cfg = PRESETS[cfg]
        return cls(**cfg)

    def __len__(self) -> int:
        return len(self.sizes)

    def __repr__(self) -> str:
        return (f'AspectRatioBuckets(area={self.area}, step={self.step}, '
                f'max_ratio={self.max_ratio}: '
                + ', '.join(f'{h}x{w}' for h, w in self.sizes) + ')')

    def assign(self, height: int, width: int) -> Size:
        """The ``(h, w)`` bucket nearest in aspect ratio to an image."""
        ratio = math.log(width / height)
        best = min(range(len(self.sizes)),
                   key=lambda i: abs(self._log_ratios[i] - ratio))
        return self.sizes[best]

    def histogram(self, sizes: Sequence[Size]) -> Dict[str, int]:
        """``{'HxW': count}`` of the buckets the image sizes go to."""
        counts = Counter(self.assign(h, w) for h, w in sizes)
        return {f'{h}x{w}': counts[(h, w)] for h, w in self.sizes
                if counts[(h, w)]}


def cover_and_crop(height: int, width: int, bucket: Size
                   ) -> Tuple[Size, Size]:
    """Size an image is resized to so it covers ``bucket`` (aspect ratio
    kept, rounded, never smaller than the bucket), and the largest crop
    offset (top, left) that stays inside it."""
    bh, bw = bucket
    scale = max(bh / height, bw / width)
    rh = max(bh, round(height * scale))
    rw = max(bw, round(width * scale))
    return (rh, rw), (rh - bh, rw - bw)


@TRANSFORMS.register_module()
class BucketResizeCrop(BaseTransform):
    """Resize an image to cover its aspect-ratio bucket and crop it there.

    Records ``bucket``, ``resized_shape``, ``crop_top_left`` (top, left in
    the resized image) and ``img_shape``; keeps ``ori_shape`` (set by the
    dataset: the image's original size), so ``ComputeTimeIds`` gives SDXL
    the original size, crop and target size of what was done.

    Args:
        buckets: preset name or ``dict(area, step, max_ratio)``.
        random_crop: crop at a random offset (else centred).
    """

    def __init__(self, buckets: Union[str, Dict] = 'sdxl',
                 random_crop: bool = True,
                 interpolation: str = 'bicubic'):
        self.buckets = AspectRatioBuckets.build(buckets)
        self.random_crop = random_crop
        self.interpolation = interpolation

    def transform(self, results: Dict) -> Dict:
        img = results['img']
        h, w = img.shape[:2]
        results.setdefault('ori_shape', (h, w))
        bucket = self.buckets.assign(h, w)
        (rh, rw), (max_top, max_left) = cover_and_crop(h, w, bucket)
        if (rh, rw) != (h, w):
            img = mmcv.imresize(img, (rw, rh),
                                interpolation=self.interpolation)
        if self.random_crop:
            top, left = (random.randint(0, max_top),
                         random.randint(0, max_left))
        else:
            top, left = max_top // 2, max_left // 2
        bh, bw = bucket
        results['img'] = img[top:top + bh, left:left + bw]
        results['bucket'] = bucket
        results['resized_shape'] = (rh, rw)
        results['crop_top_left'] = (top, left)
        results['img_shape'] = bucket
        return results


def pipeline_buckets(pipeline: Sequence) -> Optional[AspectRatioBuckets]:
    """The buckets of the ``BucketResizeCrop`` in a pipeline (configs or
    built transforms), or None when it has none."""
    for t in pipeline:
        if isinstance(t, BucketResizeCrop):
            return t.buckets
        if isinstance(t, dict) and t.get('type') in ('BucketResizeCrop',
                                                      BucketResizeCrop):
            return AspectRatioBuckets.build(t.get('buckets', 'sdxl'))
    return None


def image_size(data) -> Size:
    """``(height, width)`` of an encoded image (bytes or a path) as it will
    be read (EXIF orientation applied), from its header only."""
    from PIL import Image
    src = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    with Image.open(src) as im:
        w, h = im.size
        # 5-8: rotated by 90 degrees (ImageOps.exif_transpose swaps)
        if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            w, h = h, w
    return h, w


class BucketBatcher:
    """Per-bucket buffers: ``add(bucket, item)`` returns a full batch of
    that bucket once it holds ``batch_size`` items, else None. Leftovers
    (``leftover()``) are what an epoch ends with: fewer than ``batch_size``
    per bucket."""

    def __init__(self, batch_size: int):
        if batch_size < 1:
            raise ValueError(f'batch_size must be at least 1, got '
                             f'{batch_size}')
        self.batch_size = batch_size
        self.buffers: Dict[Size, List] = {}

    def add(self, bucket, item) -> Optional[List]:
        buf = self.buffers.setdefault(bucket, [])
        buf.append(item)
        if len(buf) == self.batch_size:
            self.buffers[bucket] = []
            return buf
        return None

    def leftover(self) -> List[List]:
        rest = [b for b in self.buffers.values() if b]
        self.buffers = {}
        return rest


@DATA_SAMPLERS.register_module()
class BucketBatchSampler(Sampler):
    """Batches of a map-style dataset, each from one aspect-ratio bucket.

    Indices come from ``sampler`` (mmengine's ``DefaultSampler`` or
    ``InfiniteSampler``, so rank splitting and shuffling are theirs) and
    wait in per-bucket buffers until a bucket holds ``batch_size``. The
    buckets are those of the ``BucketResizeCrop`` in the dataset's
    pipeline; image sizes come from ``dataset.image_sizes()`` (headers
    only). A ``CachedLatentDataset`` filled through such a pipeline gives
    each image's bucket itself (``buckets_of()``).

    Args:
        drop_last: drop each bucket's last, incomplete batch of an epoch
            (a finite sampler); else yield it smaller.
    """

    def __init__(self, sampler, batch_size: int, drop_last: bool = False):
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last
        dataset = getattr(sampler, 'dataset', None)
        if hasattr(dataset, 'buckets_of'):  # a bucketed latent cache
            self.bucket_of = dataset.buckets_of()
            return
        pipeline = getattr(getattr(dataset, 'pipeline', None), 'transforms',
                           None)
        buckets = pipeline_buckets(pipeline or [])
        if buckets is None or not hasattr(dataset, 'image_sizes'):
            raise ValueError(
                'BucketBatchSampler needs a dataset with image_sizes() (e.g. '
                'HFImageTextDataset) whose pipeline has BucketResizeCrop, or '
                'a CachedLatentDataset; got '
                f'{type(dataset).__name__} with pipeline {pipeline}')
        self.bucket_of = [buckets.assign(h, w)
                          for h, w in dataset.image_sizes()]

    def __iter__(self) -> Iterator[List[int]]:
        batcher = BucketBatcher(self.batch_size)
        for idx in self.sampler:
            batch = batcher.add(self.bucket_of[idx], idx)
            if batch is not None:
                yield batch
        if not self.drop_last:
            yield from batcher.leftover()

    def __len__(self) -> int:
        # About: the count per bucket is known only as the sampler runs.
        return max(1, len(self.sampler) // self.batch_size)
