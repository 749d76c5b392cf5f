"""Fill the latent cache of a config whose training dataset is a
``CachedLatentDataset``: ``python tools/cache_latents.py CONFIG``.

Runs the source dataset's transforms and the config's VAE and text
encoders once per image and variant; training then reads the cache.
"""
import argparse

from mmengine.config import Config, DictAction

from diffkd.datasets.latent_cache import fill_config_latent_cache


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
    return fill_config_latent_cache(cfg, batch_size=args.batch_size,
                                    seed=args.seed, device=args.device,
                                    name=args.config)


if __name__ == '__main__':
    main()
