"""Metrics that need network weights: resolved when the metric is built
(before any image is generated); missing weights leave the metric out with
a message naming the file, or stop the run when ``on_missing='error'``."""
import logging
from typing import Dict, List, Optional, Sequence

from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from ..weights import MissingWeightsError


class WeightedMetric(BaseMetric):

    def __init__(self,
                 on_missing: str = 'skip',
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        if on_missing not in ('skip', 'error'):
            raise ValueError(f"{type(self).__name__}: on_missing must be "
                             f"'skip' or 'error', got {on_missing!r}")
        self.missing: Optional[str] = None
        try:
            self.load(self.find_weights())
        except MissingWeightsError as err:
            if on_missing == 'error':
                raise
            self.missing = str(err)
            print_log(f'{type(self).__name__} is left out: {err}',
                      logger='current', level=logging.WARNING)

    # subclasses: where the weights are, how to load them, how to score
    def find_weights(self):
        raise NotImplementedError

    def load(self, weights) -> None:
        raise NotImplementedError

    def score_samples(self, samples: List[Dict]) -> List[Dict]:
        """One result row per generated sample."""
        raise NotImplementedError

    def process(self, data_batch, data_samples: Sequence[Dict]) -> None:
        if self.missing is None:
            self.results.extend(self.score_samples(list(data_samples)))

    def evaluate(self, size: int) -> Dict:
        if self.missing is not None:
            print_log(f'{type(self).__name__} was left out: {self.missing}',
                      logger='current', level=logging.WARNING)
            return {}
        return super().evaluate(size)
