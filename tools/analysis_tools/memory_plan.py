"""Planned peak device memory of a training config, and the largest batch
that fits a card: ``python tools/analysis_tools/memory_plan.py CONFIG
[--batch B] [--resolution R] [--card-gib 24] [--json]``.

Parameter counts come from the published architectures built on the meta
device; activations from one training step traced with random weights at
small sizes and scaled (diffkd/analysis/memory_plan.py,
docs/performance.md "Memory planner"). Nothing is downloaded and no GPU is
needed.
"""
import argparse
import json
import sys

from mmengine.config import Config, DictAction

from diffkd.analysis.memory_plan import GIB, ladder, load_config, plan


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('config')
    p.add_argument('--batch', type=int, default=1, help='batch per device')
    p.add_argument('--resolution', type=int, default=1024,
                   help='pixels per side (default 1024)')
    p.add_argument('--card-gib', type=float, default=24.0,
                   help='device memory in GiB, for the largest batch that '
                   'fits (default 24)')
    p.add_argument('--width-divisor', type=int,
                   help='trace published models at 1/N width (default 8)')
    p.add_argument('--ladder', action='store_true',
                   help='plan the memory switches added one by one from a '
                   'baseline with none (docs/performance.md)')
    p.add_argument('--json', action='store_true', help='print JSON')
    p.add_argument('--cfg-options', nargs='+', action=DictAction,
                   help='override config keys (e.g. model.teacher.dtype=None)')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg: Config = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if args.ladder:
        rows = ladder(cfg, args.batch, args.resolution,
                      width_divisor=args.width_divisor)
        if args.json:
            json.dump([dict(switch=n, **r.as_dict(args.card_gib))
                       for n, r in rows], sys.stdout, indent=2)
            sys.stdout.write('\n')
            return rows
        print(f'{args.config}: batch {args.batch} at '
              f'{args.resolution} px, planned peak / largest batch '
              f'on {args.card_gib:g} GiB')
        for name, r in rows:
            print(f'  {name:58s} {r.peak / GIB:8.2f} GiB '
                  f'{r.largest_batch(args.card_gib):5d}')
        return rows
    result = plan(cfg, batch=args.batch, resolution=args.resolution,
                  width_divisor=args.width_divisor)
    if args.json:
        json.dump(result.as_dict(args.card_gib), sys.stdout, indent=2)
        sys.stdout.write('\n')
        return result
    print(f'{args.config}: batch {result.batch} at {result.resolution} px')
    for name, nbytes in result.breakdown().items():
        print(f'  {name:58s} {nbytes / GIB:8.2f} GiB')
    print(f'  {"peak (resident + the larger phase)":58s} '
          f'{result.peak / GIB:8.2f} GiB')
    for note in result.notes:
        print(f'  note: {note}')
    print(f'largest batch on a {args.card_gib:g} GiB card: '
          f'{result.largest_batch(args.card_gib)}')
    return result


if __name__ == '__main__':
    main()
