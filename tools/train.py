"""Train with an mmengine Runner: ``python tools/train.py CONFIG``.

Also the entry point of ``mim train diffkd CONFIG``, of ``torchrun ...
tools/train.py CONFIG --launcher pytorch`` (tools/dist_train.sh) and of
``srun ... --launcher slurm`` (tools/slurm_train.sh). The runner is the
config's ``runner_type``: ``DiffusionRunner`` (configs/_base_/
default_runtime.py), or ``DiffusionFlexibleRunner`` with a ``strategy``
(FSDP, DeepSpeed); both read checkpoints as data (diffkd/engine/runner.py).
This tool only maps its flags to config keys: ``RUNNERS.build(cfg)`` of the
same config trains the same.

Exit status: 0 when training finished; 143 / 130 when stopped by SIGTERM /
SIGINT after writing a resumable checkpoint; 1 on any error (the message is
printed last). See docs/reliability.md.
"""
import argparse
import os
import sys
import traceback

from mmengine.config import DictAction

from diffkd.apis import check_config
from diffkd.apis.config import train_config
from diffkd.apis.train import build_runner, run_training
from diffkd.engine.errors import RunStopped


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
        help="mixed precision, optim_wrapper.dtype='auto': bf16 autocast "
        'where the device has bf16 (a CPU, a recent GPU), else fp16 with '
        'loss scaling; a config that sets a dtype keeps it')
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


def main(argv=None):
    args = parse_args(argv)
    cfg = train_config(args.config, args.work_dir, args.cfg_options,
                       args.launcher, amp=args.amp, resume=args.resume)
    check_config(cfg)  # every type= and key, before anything is built
    run_training(build_runner(cfg))


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
