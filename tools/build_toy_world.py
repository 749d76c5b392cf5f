"""Build the offline toy world in ``$DIFFKD_HOME/toy`` (default
``~/.cache/diffkd``): ``python tools/build_toy_world.py [--only NAME ...]``.

Everything a ``diffkd-toy/<name>`` id in a config points at is built here,
once; training, testing and sampling only look the folders up. Takes about
10 seconds on 2 CPU cores (the toy teachers' UNets are shipped).

``--retrain-teachers`` trains the toy teachers with
``configs/toy/*_finetune_toy.py`` and writes them as the shipped weights
(``diffkd/toy/weights/<kind>-teacher``): about 8 minutes on 2 idle CPU cores.
"""
import argparse
import sys

from diffkd.toy import (build_toy_world, retrain_shipped_teachers,
                        toy_asset_names)
from diffkd.toy.assets import TEACHER_ASSETS
from diffkd.utils.hub import diffkd_home, is_built, toy_asset_dir


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        '--only', nargs='+', action='extend', metavar='NAME',
        choices=toy_asset_names(),
        help='build only these assets (and what they need): '
        + ', '.join(toy_asset_names()))
    parser.add_argument('--home', help='diffkd cache folder (default: '
                        '$DIFFKD_HOME, else ~/.cache/diffkd)')
    parser.add_argument(
        '--retrain-teachers', action='store_true',
        help='train the toy teachers (those in --only, else both) with '
        'their fine-tune configs and write them as the shipped weights')
    parser.add_argument('--weights-dir', help='where the shipped teachers '
                        'are read and written (default: diffkd/toy/weights)')
    parser.add_argument('--list', action='store_true',
                        help='list the assets and whether they are built')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    home = args.home or diffkd_home()
    if args.list:
        for name in toy_asset_names():
            path = toy_asset_dir(name, home)
            state = 'built' if is_built(path) else 'not built'
            print(f'diffkd-toy/{name:14s} {state:10s} {path}')
        return 0
    if args.retrain_teachers:
        names = [n for n in (args.only or TEACHER_ASSETS)
                 if n in TEACHER_ASSETS]
        if not names:
            sys.exit(f'error: --retrain-teachers: --only names no teacher '
                     f'({", ".join(TEACHER_ASSETS)})')
        kinds = [n[:-len('-teacher')] for n in names]
        shipped = retrain_shipped_teachers(kinds, home, args.weights_dir)
        for kind, folder in shipped.items():
            print(f'[diffkd toy] {kind} teacher shipped in {folder}')
    paths = build_toy_world(args.only, home, weights_dir=args.weights_dir)
    print(f'[diffkd toy] ready in {home}: ' + ', '.join(paths), flush=True)
    return 0


if __name__ == '__main__':
    sys.exit(main())
