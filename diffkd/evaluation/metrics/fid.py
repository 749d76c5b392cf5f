"""FID of the generated images against reference images.

Features come from the Inception network that clean-fid and StyleGAN's
metrics use (NVIDIA's TorchScript ``inception-2015-12-05.pt``, no
torchvision needed); the Frechet distance is torchmetrics'
``FrechetInceptionDistance``.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from diffkd.registry import METRICS
from diffkd.utils.hub import resolve_model_path
from ..weights import find_weights_file
from .base import WeightedMetric

INCEPTION_FILE = 'inception-2015-12-05.pt'
INCEPTION_URL = ('https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/'
                 'pretrained/metrics/inception-2015-12-05.pt')
IMAGE_EXTS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')


def list_images(folder: str) -> List[str]:
    """Image files under ``folder`` (recursively), in sorted order."""
    found = []
    for root, _, files in os.walk(folder):
        found += [osp.join(root, f) for f in files
                  if f.lower().endswith(IMAGE_EXTS)]
    return sorted(found)


class _FeatureRows(nn.Module):
    """Lets torchmetrics' FID take precomputed feature rows."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, rows):
        return rows


@METRICS.register_module()
class FID(WeightedMetric):
    """Frechet Inception Distance (lower is better).

    Args:
        reference: folder of reference images (searched recursively) or a
            ``diffkd-toy/...`` dataset id; e.g. MS-COCO val2014 images for
            the BK-SDM/KOALA protocol.
        inception: TorchScript feature network taking uint8 NCHW images and
            ``return_features=True`` (default
            ``$DIFFKD_HOME/metrics/inception-2015-12-05.pt``).
        num_reference: use at most this many reference images.
        batch_size: images per feature forward.
    """

    default_prefix = 'fid'

    def __init__(self,
                 reference: str,
                 inception: Optional[str] = None,
                 num_reference: Optional[int] = None,
                 batch_size: int = 32,
                 on_missing: str = 'skip',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        self.inception_path = inception
        self.reference = reference
        self.num_reference = num_reference
        self.batch_size = batch_size
        super().__init__(on_missing, collect_device, prefix)

    def find_weights(self):
        return find_weights_file('FID', 'inception', self.inception_path,
                                 INCEPTION_FILE, INCEPTION_URL)

    def load(self, path):
        self.net = torch.jit.load(path, map_location='cpu').eval()
        folder = resolve_model_path(self.reference)
        self.reference_files = list_images(folder)[:self.num_reference]
        if len(self.reference_files) < 2:
            raise ValueError(f'FID: reference {self.reference!r} ({folder}) '
                             f'holds {len(self.reference_files)} images; '
                             'need at least 2')

    @torch.no_grad()
    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Feature rows of uint8 HxWx3 images."""
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = torch.from_numpy(np.stack(images[i:i + self.batch_size]))
            out.append(self.net(batch.permute(0, 3, 1, 2).contiguous(),
                                return_features=True).double())
        return torch.cat(out)

    def score_samples(self, samples: List[Dict]) -> List[Dict]:
        rows: List[Dict] = [{} for _ in samples]
        for who in ('', 'teacher_'):
            if who + 'image' in samples[0]:
                feats = self.features([s[who + 'image'] for s in samples])
                for row, f in zip(rows, feats):
                    row[who + 'features'] = f.numpy()
        return rows

    def reference_features(self, size) -> torch.Tensor:
        images = []
        for path in self.reference_files:
            with Image.open(path) as img:
                images.append(np.asarray(
                    img.convert('RGB').resize(size, Image.BICUBIC)))
        return self.features(images)

    def compute_metrics(self, results: List[Dict]) -> Dict[str, float]:
        from torchmetrics.image.fid import FrechetInceptionDistance
        first = results[0]['features']
        # Reference images are resized to the generated images' size.
        real = self.reference_features(self._size)
        out = {}
        for key in results[0]:
            fid = FrechetInceptionDistance(feature=_FeatureRows(len(first)))
            fid.update(real, real=True)
            fid.update(torch.from_numpy(np.stack([r[key] for r in results])),
                       real=False)
            out[key.replace('teacher_', 'teacher/').replace(
                'features', 'score')] = float(fid.compute())
        return out

    def process(self, data_batch, data_samples: Sequence[Dict]) -> None:
        if self.missing is None and data_samples:
            h, w = data_samples[0]['image'].shape[:2]
            self._size = (w, h)
        super().process(data_batch, data_samples)
