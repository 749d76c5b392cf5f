"""Which adapters work on a run's student UNet:
``python tools/analysis_tools/compat.py WORK_DIR``.

Tries, on tiny CPU inputs: ``ControlNetModel.from_unet`` (and a forward
pass with its residuals), IP-Adapter attention-processor loading (and a
forward pass), a LoRA save/load round trip, and the single-file (LDM/SGM)
layout. Prints one line per adapter; exits 1 when one fails (``--json``:
the rows as JSON). WORK_DIR may also be a pipeline or UNet folder.
"""
import argparse
import json
import sys

from diffkd.export.compat import compat_report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('work_dir', help='work dir, pipeline or UNet folder')
    p.add_argument('--json', action='store_true', help='print JSON rows')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    rows = compat_report(args.work_dir)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f'{r["adapter"]:12s} {"ok  " if r["ok"] else "FAIL"} '
                  f'{r["detail"]}')
    if not all(r['ok'] for r in rows) and __name__ == '__main__':
        sys.exit(1)
    return rows


if __name__ == '__main__':
    main()
