"""Training speed of a config, optionally against a bare PyTorch loop.

``python tools/analysis_tools/benchmark_train.py CONFIG --iters N
[--warmup W] [--reference] [--repeat K] [--amp] [--random-weights]
[--toy-data PX]
[--cfg-options ...] [--out FILE]``

Runs W + N iterations of the config with the mmengine Runner exactly as
``tools/train.py`` would (same hooks, logging, optimizer wrapper) and times
the last N: seconds per iteration, images per second, peak memory and the
split into data, encoders (VAE + text), teacher forward, student forward +
backward, optimizer step and what the engine adds around them.

``--reference`` then runs, in the same process, a loop written in plain
PyTorch (no Runner, hooks or registries) doing the same math on the same
modules, batch size, dtype and seed, and reports engine/reference ratios.
Before timing, one batch is scored by both and the losses are compared, so
the two loops are known to compute the same thing. Prints JSON.

``--random-weights`` replaces every published model the config names by
its architecture with random weights (written to a temporary folder and
loaded through ``from_pretrained``), and ``--toy-data PX`` trains on the
toy captioned shapes at PX pixels: the real configs then run offline.
The measuring is ``diffkd.analysis.benchmark_train``.
"""
import argparse
import json

from mmengine.config import DictAction

from diffkd.analysis.benchmark_train import benchmark_train


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=20,
                        help='timed iterations')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed iterations first')
    parser.add_argument('--reference', action='store_true',
                        help='also time a bare PyTorch loop doing the same')
    parser.add_argument('--repeat', type=int, default=1,
                        help='alternate engine and reference runs this '
                        'many times; report medians')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision, as tools/train.py --amp')
    parser.add_argument('--random-weights', action='store_true',
                        help='published models the config names get their '
                        'real architecture with random weights (offline)')
    parser.add_argument('--toy-data', type=int, metavar='PX',
                        help='train on the toy captioned shapes at PX '
                        'pixels instead of the config\'s dataset')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. '
                        'train_dataloader.batch_size=8')
    parser.add_argument('--out', help='also write the JSON here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    result = benchmark_train(
        args.config, iters=args.iters, warmup=args.warmup,
        reference=args.reference, repeat=args.repeat, amp=args.amp,
        random_weights=args.random_weights, toy_data=args.toy_data,
        cfg_options=args.cfg_options)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return result


if __name__ == '__main__':
    main()
