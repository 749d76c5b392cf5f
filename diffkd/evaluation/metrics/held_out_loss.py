"""The training loss on held-out data, as an mmengine metric (val loop)."""
from typing import Dict, List, Sequence

from mmengine.evaluator import BaseMetric

from diffkd.registry import METRICS


@METRICS.register_module()
class HeldOutLoss(BaseMetric):
    """Mean of each loss term over the val set, from a diffusion model's
    held-out ``val_step`` (fixed noise and timesteps per sample, see
    ``HeldOutLossStep``): ``val/loss`` and, for a distiller,
    ``val/loss_task``, ``val/loss_kd_out``, ``val/loss_kd_feat``.

    Each batch counts with its number of samples, so the means are those
    over samples whatever the batch size. With several processes every
    rank's batches count (mmengine's sampler repeats a few samples when
    the set does not divide evenly).
    """
    default_prefix = 'val'

    def process(self, data_batch, data_samples: Sequence[Dict]) -> None:
        for out in data_samples:
            if 'num_samples' not in out:
                raise ValueError(
                    'HeldOutLoss needs the loss terms of a held-out '
                    "val_step (with 'num_samples'); the model returned "
                    f'{sorted(out)[:5]}: validate a StableDiffusion, '
                    'StableDiffusionXL or DiffusionDistiller model')
            self.results.append(
                {k: (int(v) if k == 'num_samples' else float(v))
                 for k, v in out.items()})

    def compute_metrics(self, results: List[Dict]) -> Dict[str, float]:
        total = sum(r['num_samples'] for r in results)
        keys = [k for k in results[0] if k != 'num_samples']
        return {k: sum(r[k] * r['num_samples'] for r in results) / total
                for k in keys}
