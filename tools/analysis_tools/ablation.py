"""Train and evaluate a set of configs the same way, and tabulate them.

``python tools/analysis_tools/ablation.py`` runs the toy KD ablation
(every config in ``configs/toy/ablation/``): each config is trained with
``tools/train.py`` and evaluated with ``tools/test.py`` (toy prompt score
of student and teacher, agreement with the teacher), one after the other.
Writes ``ablation.json`` and ``ablation.md`` (a markdown table) in
``--work-dir`` and prints the table. Extra ``--cfg-options`` go to every
training run.
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
import time
from typing import Dict, List

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


def run(cmd: List[str], log: str) -> float:
    start = time.perf_counter()
    with open(log, 'w') as f:
        ret = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if ret.returncode != 0:
        sys.exit(f'error: {" ".join(cmd)} failed (exit {ret.returncode}); '
                 f'see {log}')
    return time.perf_counter() - start


def table(rows: List[Dict]) -> str:
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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('configs', nargs='*', default=None,
                   help='configs or folders (default: configs/toy/ablation)')
    p.add_argument('--work-dir', default='work_dirs/toy_ablation')
    p.add_argument('--num-prompts', type=int, default=90,
                   help='evaluation prompts per run')
    p.add_argument('--cfg-options', nargs='+', default=[],
                   help='extra options for every training run')
    args = p.parse_args(argv)
    paths = args.configs or [osp.dirname(find_config('toy/ablation/'
                                                     'ssd_1b_task_only.py'))]
    configs = list_configs(paths)
    os.makedirs(args.work_dir, exist_ok=True)
    rows = []
    for i, config in enumerate(configs, 1):
        name = osp.splitext(osp.basename(config))[0]
        work = osp.join(args.work_dir, name)
        print(f'[{i}/{len(configs)}] {name}: training', flush=True)
        train_cmd = [sys.executable, find_tool('train.py'), config,
                     '--work-dir', work]
        if args.cfg_options:
            train_cmd += ['--cfg-options', *args.cfg_options]
        seconds = run(train_cmd, osp.join(args.work_dir, f'{name}.train.log'))
        print(f'[{i}/{len(configs)}] {name}: trained in {seconds:.0f} s, '
              'evaluating', flush=True)
        out = osp.join(work, 'metrics.json')
        # the config as trained (with any --cfg-options), dumped by mmengine
        trained = osp.join(work, osp.basename(config))
        run([sys.executable, find_tool('test.py'), trained, work,
             '--work-dir', osp.join(work, 'test'), '--out', out,
             '--cfg-options',
             f'test_dataloader.dataset.num_prompts={args.num_prompts}'],
            osp.join(args.work_dir, f'{name}.test.log'))
        with open(out) as f:
            rows.append(dict(name=name, config=config, metrics=json.load(f),
                             train_seconds=seconds))
    md = table(rows)
    with open(osp.join(args.work_dir, 'ablation.json'), 'w') as f:
        json.dump(rows, f, indent=2)
    with open(osp.join(args.work_dir, 'ablation.md'), 'w') as f:
        f.write(md)
    print(md)
    return rows


if __name__ == '__main__':
    main()
