"""How closely a student reproduces its teacher on the same prompts and
seeds: final-latent MSE, pixel PSNR (torchmetrics) and (with its weights)
LPIPS."""
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from diffkd.registry import METRICS
from ..weights import MissingWeightsError
from .lpips import LPIPS

MAX_PSNR = 100.0  # identical images: reported as 100 dB, not infinity


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two uint8 images (torchmetrics'), at most
    ``MAX_PSNR``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio
    value = peak_signal_noise_ratio(
        torch.from_numpy(a).double(), torch.from_numpy(b).double(),
        data_range=255.0)
    return min(MAX_PSNR, float(value))


def to_unit_range(images: Sequence[np.ndarray]) -> torch.Tensor:
    """uint8 HxWx3 images -> float NCHW in [-1, 1]."""
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1


@METRICS.register_module()
class TeacherStudentAgreement(BaseMetric):
    """Teacher-student agreement (lower MSE/LPIPS and higher PSNR: closer).

    Needs the teacher's samples beside the student's: evaluate a
    ``DiffusionDistiller`` with ``DiffusionTestLoop(teacher=True)``;
    without them the metric is left out with a warning.

    Args:
        lpips: also report LPIPS; its two weight files are looked for in
            ``$DIFFKD_HOME/metrics`` (or ``lpips_backbone``/``lpips_heads``)
            and, when missing, LPIPS alone is left out with a message.
    """

    default_prefix = 'agreement'

    def __init__(self,
                 lpips: bool = True,
                 lpips_backbone: Optional[str] = None,
                 lpips_heads: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.lpips = None
        if lpips:
            try:
                self.lpips = LPIPS.from_files(lpips_backbone, lpips_heads)
            except MissingWeightsError as err:
                print_log(f'LPIPS is left out: {err}', logger='current',
                          level=logging.WARNING)

    def process(self, data_batch, data_samples: Sequence[Dict]) -> None:
        samples = [s for s in data_samples if 'teacher_latent' in s]
        if not samples:
            return  # no teacher samples: reported by evaluate()
        dist = None
        if self.lpips is not None:
            dist = self.lpips(to_unit_range([s['image'] for s in samples]),
                              to_unit_range([s['teacher_image']
                                             for s in samples])).tolist()
        for i, s in enumerate(samples):
            row = dict(
                latent_mse=float((s['latent'].float() -
                                  s['teacher_latent'].float()).pow(2).mean()),
                psnr=psnr(s['image'], s['teacher_image']))
            if dist is not None:
                row['lpips'] = dist[i]
            self.results.append(row)

    def evaluate(self, size: int) -> Dict:
        from mmengine.dist import all_gather_object
        if not any(all_gather_object(bool(self.results))):
            print_log(
                'TeacherStudentAgreement was left out: the model produced no '
                'teacher samples (evaluate a DiffusionDistiller with '
                "test_cfg=dict(type='DiffusionTestLoop', teacher=True))",
                logger='current', level=logging.WARNING)
            return {}
        return super().evaluate(size)

    def compute_metrics(self, results: List[Dict]) -> Dict[str, float]:
        return {k: float(np.mean([r[k] for r in results]))
                for k in results[0]}
