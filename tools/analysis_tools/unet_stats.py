"""Teacher and student UNet sizes and block structure of a config, as JSON.

``python tools/analysis_tools/unet_stats.py CONFIG``. UNets are built on the
meta device from their configs: no weights are loaded and nothing is
downloaded (real teachers' UNet configs ship with diffkd).
"""
import argparse
import json
import sys

from mmengine.config import Config, DictAction

from diffkd.analysis.unet_stats import stats


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('config')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = p.parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    json.dump(stats(cfg), sys.stdout, indent=2)
    sys.stdout.write('\n')


if __name__ == '__main__':
    main()
