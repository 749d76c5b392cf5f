"""The benchmark suite: distillation training with MFU, and inference
latency, of the real architectures in one command.

``python tools/analysis_tools/benchmark_suite.py --preset gpu|tiny
--out-dir DIR [--peak-tflops T] [--budget-s S]``

``gpu``: SSD-1B from SDXL and KOALA-700M at 1024 px, BK-SDM-Small at 512
px, bf16, each at the largest batch that fits (doubling until CUDA runs out
of memory): seconds per iteration, images per second, peak memory,
engine/reference ratio, FLOPs per iteration (FlopCounterMode) and MFU over
the device's dense bf16 peak; then UNet latency at 1024 px, 25 steps (SDXL,
SSD-1B, Vega, KOALA-1B, KOALA-700M) and 512 px (SD-1.5, BK-SDM). Random
weights, nothing downloaded; about 8 minutes on one H100. ``tiny``: the
same code on a CPU at toy size, in seconds. Writes DIR/suite.json and
DIR/suite.md, prints the Markdown; progress goes to stderr. The logic is
``diffkd.analysis.benchmark_suite`` (docs/performance.md, "GPU suite").
"""
import argparse
import json
import os
import os.path as osp

from diffkd.analysis.benchmark_suite import PRESETS, run_suite, to_markdown


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--preset', choices=sorted(PRESETS), required=True)
    parser.add_argument('--out-dir', required=True,
                        help='where suite.json and suite.md are written')
    parser.add_argument('--peak-tflops', type=float,
                        help='the device peak MFU divides by (default: the '
                        'bf16 table for known GPUs, else a measured dense '
                        'matmul)')
    parser.add_argument('--budget-s', type=float,
                        help='time budget of the training cases and '
                        'inference in seconds (0: none; default: the '
                        "preset's)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = run_suite(args.preset, peak_tflops=args.peak_tflops,
                       budget_s=args.budget_s)
    os.makedirs(args.out_dir, exist_ok=True)
    with open(osp.join(args.out_dir, 'suite.json'), 'w') as f:
        json.dump(result, f, indent=2)
        f.write('\n')
    text = to_markdown(result)
    with open(osp.join(args.out_dir, 'suite.md'), 'w') as f:
        f.write(text)
    print(text)
    return result


if __name__ == '__main__':
    main()
