"""Evaluate a trained model: ``python tools/test.py CONFIG CHECKPOINT``.

Also the entry point of ``mim test diffkd CONFIG --checkpoint CHECKPOINT``
(mim passes the checkpoint on as the positional argument).
Samples the config's ``test_dataloader`` prompts with ``test_cfg``'s
settings, runs every ``test_evaluator`` metric, prints the scores and saves
them, with every generated image, in ``<work_dir>/<timestamp>/test/``.
CHECKPOINT is a ``.pth`` file or a work dir (its latest checkpoint).
"""
import argparse
import json
import os

from mmengine.config import DictAction

from diffkd.apis import check_config
from diffkd.apis.config import evaluation_config
from diffkd.apis.train import build_runner


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Evaluate a diffkd model')
    parser.add_argument('config', help='config file path')
    parser.add_argument(
        'checkpoint', nargs='?',
        help='checkpoint (.pth) or work dir; none: the config\'s weights '
        'as they are (e.g. a pretrained pipeline)')
    parser.add_argument('--work-dir', help='where the outputs go (default: '
                        './work_dirs/<config>)')
    parser.add_argument('--out', help='also write the metrics JSON here')
    parser.add_argument('--no-images', action='store_true',
                        help='keep the scores, not the generated images')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config keys, e.g. test_dataloader.dataset.'
        'num_prompts=16')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main(argv=None):
    args = parse_args(argv)
    cfg = evaluation_config(args.config, args.checkpoint, args.work_dir,
                            args.cfg_options, args.launcher,
                            save_images=not args.no_images)
    check_config(cfg)  # every type= and key, before anything is built
    # DiffusionRunner (default_runtime.py) reads the checkpoint as data.
    metrics = build_runner(cfg).test()
    metrics = {k: float(v) for k, v in metrics.items()}
    print(json.dumps(metrics, indent=2))
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(metrics, f, indent=2)
    return metrics


if __name__ == '__main__':
    main()
