"""The toy world's prompt-following score as an mmengine metric."""
from typing import Dict, List, Sequence

from mmengine.evaluator import BaseMetric

from diffkd.registry import METRICS
from diffkd.toy.score import read_toy_image
from diffkd.toy.shapes import parse_caption

_KEYS = ('colour', 'shape', 'background')


@METRICS.register_module()
class ToyPromptScore(BaseMetric):
    """Does each image show the colour, shape and background its toy prompt
    asks for? Read from pixels (``diffkd.toy.score``): no weights, fully
    deterministic. Scores the teacher's images too when the model produced
    them (``teacher/..._acc``)."""

    default_prefix = 'toy'

    def process(self, data_batch, data_samples: Sequence[Dict]) -> None:
        for sample in data_samples:
            want = parse_caption(sample['prompt'])
            if want is None:
                raise ValueError(
                    f"ToyPromptScore: prompt {sample['prompt']!r} (index "
                    f"{sample.get('index')}) names no toy colour, shape and "
                    "background (e.g. 'a red circle on a blue background')")
            row = {}
            for who in ('', 'teacher_'):
                if who + 'image' in sample:
                    got = read_toy_image(sample[who + 'image']) or {}
                    hits = [got.get(k) == want[k] for k in _KEYS]
                    row.update({f'{who}{k}': h for k, h in zip(_KEYS, hits)})
                    row[who + 'all'] = all(hits)
            self.results.append(row)

    def compute_metrics(self, results: List[Dict]) -> Dict[str, float]:
        out = {}
        for key in results[0]:
            name = key.replace('teacher_', 'teacher/') + '_acc'
            out[name] = sum(r[key] for r in results) / len(results)
        return out
