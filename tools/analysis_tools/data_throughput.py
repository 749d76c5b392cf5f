"""Samples per second of a config's training data pipeline, per number of
dataloader workers.

``python tools/analysis_tools/data_throughput.py CONFIG [--workers 0 1 2]
[--batches N] [--warmup W] [--synthetic-shards DIR] [--cfg-options ...]
[--out FILE]``

Builds ``train_dataloader`` as the Runner does and times N batches after W
warm-up ones for each worker count (no model: this is what the data side
can deliver). Compare with ``img_per_s`` of ``benchmark_train.py`` on the
GPU: the workers one GPU needs are the first count whose samples/s
exceeds it (docs/data.md). Prints JSON.

``--synthetic-shards DIR`` reads shards of real-size JPEGs made locally in
DIR (written on first use) instead of the config's shards: this machine's
data throughput without the data set at hand.
"""
import argparse
import json
import sys

from mmengine.config import Config, DictAction

from diffkd.datasets.throughput import measure_throughput


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--workers', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--batches', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--synthetic-shards', metavar='DIR',
                        help='time shards of locally made real-size JPEGs '
                        '(written to DIR on first use)')
    parser.add_argument('--synthetic-images', type=int, default=240)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    parser.add_argument('--out', help='also write the JSON here')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    import diffkd.datasets  # noqa: F401  (registers datasets, transforms)
    if args.synthetic_shards:
        import os.path as osp

        from diffkd.datasets.throughput import write_photo_like_shards
        manifest = osp.join(args.synthetic_shards, 'manifest.json')
        if not osp.isfile(manifest):
            write_photo_like_shards(args.synthetic_shards,
                                    args.synthetic_images)
        dataset = cfg.train_dataloader.dataset
        if dataset.get('type') != 'WebDatasetShards':
            sys.exit(f'--synthetic-shards: {args.config} trains on a '
                     f'{dataset.get("type")}, not WebDatasetShards')
        dataset.shards = osp.join(args.synthetic_shards, '*.tar')
    results = measure_throughput(cfg.train_dataloader, args.workers,
                                 args.batches, args.warmup)
    report = dict(config=args.config,
                  shards=cfg.train_dataloader.dataset.get('shards'),
                  results=results)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return report


if __name__ == '__main__':
    main()
    sys.exit(0)
