"""Inference cost of teacher vs student UNets, as JSON.

``python tools/analysis_tools/benchmark_infer.py [CONFIG ...] [--arch NAME
...] [--resolution PX] [--steps N] [--batch-size B] [--warmup W] [--dtype
float32|bfloat16|float16] [--device cpu|cuda] [--teacher-weights PATH]
[--student-weights PATH] [--cfg-options ...] [--out FILE.json]``

Per UNet: parameters, checkpoint size in the chosen dtype, latency of N
denoising steps (one UNet forward on the classifier-free-guidance batch 2*B
per step, what a pipeline step costs), peak memory, and each student's
speed-up and parameter ratio against its teacher.

Models come from diffkd configs (a distillation config gives its teacher and
the student its compression recipe makes; a diffusion config its UNet) or
from ``--arch`` names (real architectures from the shipped teacher configs
and the compression recipes). UNets whose weights are on disk are loaded;
the others get random weights (nothing is downloaded): latency does not
depend on weight values. UNets are built and measured one at a time.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import Dict

import torch
from mmengine.config import DictAction

from diffkd.analysis.benchmark_infer import (ARCHS, DTYPES, PRESETS,
                                             BenchmarkError, benchmark_infer)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f'--arch presets: {", ".join(sorted(PRESETS))}; single '
        f'models: {", ".join(ARCHS)}')
    p.add_argument('configs', nargs='*', metavar='CONFIG',
                   help='diffkd distillation or diffusion configs')
    p.add_argument('--arch', nargs='+', default=[],
                   help='named architectures or presets (random weights)')
    p.add_argument('--resolution', type=int,
                   help='image side in pixels (default: each model\'s '
                   'native one, e.g. 1024 SDXL, 512 SD-1.5)')
    p.add_argument('--steps', type=int, default=25,
                   help='timed denoising steps')
    p.add_argument('--batch-size', type=int, default=1,
                   help='images per prompt batch (the UNet sees twice as '
                   'many: classifier-free guidance)')
    p.add_argument('--warmup', type=int, default=1,
                   help='untimed steps first')
    p.add_argument('--dtype', choices=list(DTYPES),
                   help='default: float16 on cuda, float32 on cpu')
    p.add_argument('--device', choices=['cpu', 'cuda'],
                   help='default: cuda when available')
    p.add_argument('--threads', type=int,
                   help='torch intra-op CPU threads (default: torch\'s)')
    p.add_argument('--teacher-weights',
                   help='UNet folder, pipeline folder or state-dict file')
    p.add_argument('--student-weights',
                   help='UNet folder, pipeline folder or state-dict file')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override keys of every CONFIG, e.g. '
                   'model.teacher.model=diffkd-toy/sdxl')
    p.add_argument('--out', help='also write the JSON here')
    args = p.parse_args(argv)
    if not args.configs and not args.arch:
        p.error('give at least one CONFIG or --arch name')
    if min(args.steps, args.batch_size, args.threads or 1) < 1 or \
            args.warmup < 0:
        p.error('--steps, --batch-size and --threads must be >= 1, '
                '--warmup >= 0')
    return args


def main(argv=None) -> Dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def run(args) -> Dict:
    result = benchmark_infer(
        args.configs, args.arch, resolution=args.resolution,
        steps=args.steps, batch_size=args.batch_size, warmup=args.warmup,
        dtype=args.dtype, device=args.device,
        teacher_weights=args.teacher_weights,
        student_weights=args.student_weights, cfg_options=args.cfg_options)
    text = json.dumps(result, indent=2)
    if args.out:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    sys.stdout.write(text + '\n')
    return result


if __name__ == '__main__':
    try:
        main()
    except BenchmarkError as err:
        sys.exit(f'benchmark_infer.py: error: {err}')
