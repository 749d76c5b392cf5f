"""Train with an mmengine Runner: ``python tools/train.py CONFIG``.

Also the entry point of ``mim train diffkd CONFIG``.
"""
import argparse
import os

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import diffkd  # noqa: F401  (safe resume loader, registries)
from diffkd.apis.config import load_run_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a diffkd config')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs, checkpoints, samples '
                        'and exports go (default: ./work_dirs/<config>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work dir when no path is given')
    parser.add_argument(
        '--amp', action='store_true',
        help='mixed precision: AmpOptimWrapper on GPU (bf16 where supported, '
        'else fp16), bf16 autocast on CPU')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. train_cfg.max_iters=10')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args) -> Config:
    cfg = load_run_config(args.config, args.work_dir, args.cfg_options,
                          args.launcher)
    # Only trainable parameters go to the optimizer (never a frozen teacher).
    cfg.optim_wrapper.setdefault('constructor',
                                 'TrainableParamsOptimWrapperConstructor')
    if args.amp:
        wrapper = cfg.optim_wrapper
        if wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
            if torch.cuda.is_available():
                wrapper.type = 'AmpOptimWrapper'
                bf16 = torch.cuda.is_bf16_supported()
                wrapper.setdefault('dtype', 'bfloat16' if bf16 else 'float16')
                wrapper.setdefault('loss_scale', 'dynamic')
            else:
                # mmengine's AmpOptimWrapper is GPU-only; bf16 autocast.
                wrapper.type = 'AutocastOptimWrapper'
                wrapper.setdefault('dtype', 'bfloat16')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    runner = Runner.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    main()
