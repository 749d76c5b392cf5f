"""Keeps what an evaluation produced: every generated image and the
scores, side by side in ``<work_dir>/<timestamp>/test/``."""
import json
import os
import os.path as osp
from typing import Dict, List, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from PIL import Image

from diffkd.registry import HOOKS


def write_json_atomic(path: str, obj) -> None:
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=2)
        f.write('\n')
    os.replace(tmp, path)


@HOOKS.register_module()
class TestOutputsHook(Hook):
    """Saves ``images/<index>.png`` (and ``teacher_images/`` when the
    teacher sampled too), ``samples.jsonl`` (prompt, seed, file per image)
    and ``metrics.json`` after the test epoch.

    Args:
        out_dir: folder for the outputs (default ``<log_dir>/test``).
        save_images: False keeps only the scores and the sample list.
    """

    priority = 'LOW'

    def __init__(self, out_dir: Optional[str] = None,
                 save_images: bool = True):
        self.out_dir = out_dir
        self.save_images = save_images
        self.records: List[Dict] = []

    def before_test(self, runner) -> None:
        self.out_dir = self.out_dir or osp.join(runner.log_dir, 'test')
        os.makedirs(self.out_dir, exist_ok=True)
        self.records = []

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs=None) -> None:
        for sample in outputs or []:
            record = dict(index=sample['index'], prompt=sample['prompt'],
                          seed=sample['seed'])
            for who in ('', 'teacher_'):
                if who + 'image' not in sample or not self.save_images:
                    continue
                rel = osp.join(f'{who}images', f"{sample['index']:05d}.png")
                os.makedirs(osp.join(self.out_dir, f'{who}images'),
                            exist_ok=True)
                Image.fromarray(sample[who + 'image']).save(
                    osp.join(self.out_dir, rel))
                record[f'{who}file'] = rel
            self.records.append(record)

    def after_test_epoch(self, runner, metrics: Optional[Dict] = None):
        # Each rank lists its own samples; rank 0 writes the scores.
        name = 'samples.jsonl' if is_main_process() else \
            f'samples.rank{runner.rank}.jsonl'
        with open(osp.join(self.out_dir, name), 'w') as f:
            for record in sorted(self.records, key=lambda r: r['index']):
                f.write(json.dumps(record) + '\n')
        if is_main_process():
            write_json_atomic(
                osp.join(self.out_dir, 'metrics.json'),
                {k: float(v) for k, v in (metrics or {}).items()})
            runner.logger.info(f'test outputs saved in {self.out_dir}')
