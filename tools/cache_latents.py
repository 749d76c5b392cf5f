"""Fill the latent cache of a config whose training dataset is a
``CachedLatentDataset``: ``python tools/cache_latents.py CONFIG``.

Runs the source dataset's transforms and the config's VAE and text
encoders once per image and variant; training then reads the cache.
"""
import argparse
import sys

from mmengine.config import Config, DictAction

import diffkd  # noqa: F401  (registries)
from diffkd.datasets.latent_cache import fill_latent_cache


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='training config file')
    parser.add_argument('--batch-size', type=int, default=16,
                        help='images encoded at once')
    parser.add_argument('--device', help='cpu or cuda (default: cuda when '
                        'available)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the cached crops and flips')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    ds = cfg.train_dataloader.dataset
    if ds.get('type') != 'CachedLatentDataset':
        sys.exit(f'error: {args.config}: train_dataloader.dataset is '
                 f"{ds.get('type')!r}, not a CachedLatentDataset; nothing to "
                 'cache')
    return fill_latent_cache(
        ds.cache_dir, ds.encoder.to_dict(), ds.source.to_dict(),
        variants=ds.get('variants', 1), dtype=ds.get('dtype', 'float32'),
        shard_size=ds.get('shard_size', 1024), batch_size=args.batch_size,
        seed=args.seed, device=args.device)


if __name__ == '__main__':
    main()
