"""Train and evaluate a set of configs the same way, and tabulate them
(``tools/analysis_tools/ablation.py``, the toy KD ablation of
``configs/toy/ablation/``). Each config is trained with ``tools/train.py``
and evaluated with ``tools/test.py``, one after the other, each in its own
process (as a user runs them)."""
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

from diffkd.utils.paths import find_config, find_tool

COLUMNS = [  # (metric key, header, format)
    ('toy/all_acc', 'prompt score (all three)', '{:.1%}'),
    ('toy/colour_acc', 'colour', '{:.1%}'),
    ('toy/shape_acc', 'shape', '{:.1%}'),
    ('toy/background_acc', 'background', '{:.1%}'),
    ('agreement/latent_mse', 'latent MSE vs teacher', '{:.4f}'),
    ('agreement/psnr', 'PSNR vs teacher (dB)', '{:.2f}'),
    ('agreement/lpips', 'LPIPS vs teacher', '{:.4f}'),
    ('toy/teacher/all_acc', 'teacher prompt score', '{:.1%}'),
]


# A folder's configs run per topology in the order of the ablation:
# (a) task only, (b) + output KD, (c) + feature KD, (d) self-attention KD.
VARIANTS = ('task_only', 'output_kd', 'feature_kd', 'self_attn_kd')


def _ablation_order(path: str):
    name = osp.splitext(osp.basename(path))[0]
    for rank, variant in enumerate(VARIANTS):
        if name.endswith('_' + variant):
            return name[:-len(variant) - 1], rank
    return name, len(VARIANTS)


def list_configs(paths: List[str]) -> List[str]:
    """Config files of ``paths`` (files, names under configs/, folders: a
    folder's configs in the order of the ablation)."""
    configs = []
    for path in paths:
        if osp.isdir(path):
            configs += sorted(glob.glob(osp.join(path, '*.py')),
                              key=_ablation_order)
        else:
            configs.append(path if osp.isfile(path) else find_config(path))
    if not configs:
        sys.exit(f'error: no configs found in {paths}')
    return configs


def run_command(cmd: List[str], log: str) -> float:
    """Seconds ``cmd`` took, its output in ``log``; exits naming the log
    when it fails."""
    start = time.perf_counter()
    with open(log, 'w') as f:
        ret = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if ret.returncode != 0:
        sys.exit(f'error: {" ".join(cmd)} failed (exit {ret.returncode}); '
                 f'see {log}')
    return time.perf_counter() - start


def table(rows: List[Dict]) -> str:
    """The rows as a markdown table (the columns some row has)."""
    cols = [c for c in COLUMNS if any(c[0] in r['metrics'] for r in rows)]
    head = ['run'] + [h for _, h, _ in cols] + ['train time']
    lines = ['| ' + ' | '.join(head) + ' |',
             '|' + '---|' * len(head)]
    for r in rows:
        cells = [r['name']] + [
            fmt.format(r['metrics'][k]) if k in r['metrics'] else '-'
            for k, _, fmt in cols] + [f"{r['train_seconds']:.0f} s"]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def default_ablation_folder() -> str:
    """``configs/toy/ablation``."""
    return osp.dirname(find_config('toy/ablation/ssd_1b_task_only.py'))


def run_ablation(configs: Optional[Sequence[str]] = None,
                 work_dir: str = 'work_dirs/toy_ablation',
                 num_prompts: int = 90,
                 cfg_options: Sequence[str] = (),
                 log: Callable[[str], None] = print) -> List[Dict]:
    """Train and evaluate each config (default: the toy ablation folder)
    in ``work_dir/<name>``, with ``cfg_options`` (``key=value`` strings)
    for every training run and ``num_prompts`` evaluation prompts; writes
    ``ablation.json`` (the rows) and ``ablation.md`` (:func:`table`) in
    ``work_dir`` and returns the rows."""
    configs = list_configs(list(configs or [default_ablation_folder()]))
    os.makedirs(work_dir, exist_ok=True)
    rows = []
    for i, config in enumerate(configs, 1):
        name = osp.splitext(osp.basename(config))[0]
        work = osp.join(work_dir, name)
        log(f'[{i}/{len(configs)}] {name}: training')
        train_cmd = [sys.executable, find_tool('train.py'), config,
                     '--work-dir', work]
        if cfg_options:
            train_cmd += ['--cfg-options', *cfg_options]
        seconds = run_command(train_cmd,
                              osp.join(work_dir, f'{name}.train.log'))
        log(f'[{i}/{len(configs)}] {name}: trained in {seconds:.0f} s, '
            'evaluating')
        out = osp.join(work, 'metrics.json')
        # the config as trained (with any --cfg-options), dumped by mmengine
        trained = osp.join(work, osp.basename(config))
        run_command(
            [sys.executable, find_tool('test.py'), trained, work,
             '--work-dir', osp.join(work, 'test'), '--out', out,
             '--cfg-options',
             f'test_dataloader.dataset.num_prompts={num_prompts}'],
            osp.join(work_dir, f'{name}.test.log'))
        with open(out) as f:
            rows.append(dict(name=name, config=config, metrics=json.load(f),
                             train_seconds=seconds))
    with open(osp.join(work_dir, 'ablation.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    with open(osp.join(work_dir, 'ablation.md'), 'w') as f:
        f.write(table(rows))
    return rows
