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
from functools import partial

from diffkd.analysis.ablation import run_ablation, table


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
    rows = run_ablation(args.configs, args.work_dir, args.num_prompts,
                        args.cfg_options, log=partial(print, flush=True))
    print(table(rows))
    return rows


if __name__ == '__main__':
    main()
