"""Train with an mmengine Runner: ``python tools/train.py CONFIG``.

Also the entry point of ``mim train diffkd CONFIG``, of ``torchrun ...
tools/train.py CONFIG --launcher pytorch`` (tools/dist_train.sh) and of
``srun ... --launcher slurm`` (tools/slurm_train.sh). The runner is the
config's ``runner_type``: ``DiffusionRunner`` (configs/_base_/
default_runtime.py), or ``DiffusionFlexibleRunner`` with a ``strategy``
(FSDP, DeepSpeed); both read checkpoints as data (diffkd/engine/runner.py).

Exit status: 0 when training finished; 143 / 130 when stopped by SIGTERM /
SIGINT after writing a resumable checkpoint; 1 on any error (the message is
printed last). See docs/reliability.md.
"""
import argparse
import contextlib
import logging
import os
import sys
import traceback

import torch
from mmengine.config import Config, DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

from diffkd.apis import check_config
from diffkd.apis.config import load_run_config
from diffkd.engine.distributed import init_distributed
from diffkd.engine.errors import RunStopped
from diffkd.engine.hooks import SignalCheckpointHook
from diffkd.registry import RUNNERS


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


def _mixed_precision(wrapper, amp: bool) -> None:
    """``--amp``, and a mixed-precision config on a machine without CUDA.

    mmengine's AmpOptimWrapper refuses CPUs; bf16 needs no loss scaler,
    so bf16 autocast (AutocastOptimWrapper) stands in for it there. A
    config set to the plain OptimWrapper (e.g. ``--cfg-options
    optim_wrapper.type=OptimWrapper``) trains in fp32: its AMP keys go.
    """
    cuda = torch.cuda.is_available()
    if wrapper.get('type', 'OptimWrapper') == 'OptimWrapper':
        if not amp:
            for key in ('dtype', 'loss_scale'):
                wrapper.pop(key, None)
            return
        wrapper.type = 'AmpOptimWrapper'
        if cuda:
            bf16 = torch.cuda.is_bf16_supported()
            wrapper.setdefault('dtype', 'bfloat16' if bf16 else 'float16')
            wrapper.setdefault('loss_scale', 'dynamic')
    elif wrapper.type == 'AmpOptimWrapper' and not cuda:
        print_log(
            'no CUDA device: AmpOptimWrapper '
            f'({wrapper.get("dtype", "float16")}) replaced by bf16 autocast '
            '(AutocastOptimWrapper)', logger='current', level=logging.WARNING)
    if wrapper.type == 'AmpOptimWrapper' and not cuda:
        wrapper.type = 'AutocastOptimWrapper'
        wrapper.dtype = 'bfloat16'
        wrapper.pop('loss_scale', None)


def build_config(args) -> Config:
    cfg = load_run_config(args.config, args.work_dir, args.cfg_options,
                          args.launcher)
    # Only trainable parameters go to the optimizer (never a frozen teacher).
    cfg.optim_wrapper.setdefault('constructor',
                                 'TrainableParamsOptimWrapperConstructor')
    _mixed_precision(cfg.optim_wrapper, args.amp)
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    return cfg


def build_runner(cfg: Config):
    if cfg.launcher != 'none':
        # Before the runner: mmengine's own set-up needs CUDA.
        init_distributed(cfg.launcher,
                         **cfg.get('env_cfg', {}).get('dist_cfg', {}))
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)  # DiffusionRunner, DiffusionFlexibleRunner
    return Runner.from_cfg(cfg)


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    check_config(cfg)  # every type= and key, before anything is built
    runner = build_runner(cfg)
    try:
        runner.train()
    except RunStopped:
        # A deliberate stop (signal, NaN loss, full disk): close the
        # visualizer so TensorBoard and local logs are complete.
        with contextlib.suppress(Exception):
            runner.call_hook('after_run')
        raise
    finally:
        # SIGTERM/SIGINT get their previous handlers back, however training
        # ended.
        for hook in runner.hooks:
            if isinstance(hook, SignalCheckpointHook):
                hook.restore()


def run(argv=None) -> int:
    """``main`` with the exit status of docs/reliability.md."""
    try:
        main(argv)
    except RunStopped as err:
        print(f'diffkd: {err}', file=sys.stderr, flush=True)
        return err.exit_code
    except SystemExit as err:  # argparse and config errors
        if err.code is None or isinstance(err.code, int):
            return err.code or 0
        print(err.code, file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once
        print('diffkd: interrupted, no checkpoint written', file=sys.stderr)
        return 130
    except BaseException as err:
        traceback.print_exc()
        print(f'diffkd: training failed: {type(err).__name__}: {err}',
              file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(run())
