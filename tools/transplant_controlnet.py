"""Carry a ControlNet trained for a teacher onto a distilled student:
``python tools/transplant_controlnet.py CONTROLNET --teacher MODEL
--compression SSD1B --out student_controlnet/``.

CONTROLNET is a diffusers ControlNet folder or hub id. MODEL is the
teacher pipeline or UNet folder (hub id, path or ``diffkd-toy/...``). The
recipe's module map moves the copied encoder and each residual
convolution to the student layer initialised from its layer, and drops
those of removed layers, which are listed. OUT is a diffusers ControlNet
folder: ``ControlNetModel.from_pretrained(OUT)`` beside the student UNet.
A student without a mid block has no ControlNet; the error names the
recipe option that keeps one. See docs/export.md.
"""
import argparse
import json

from diffkd.export.transplant import (teacher_unet_config,
                                      transplant_controlnet_folder)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('controlnet', help='ControlNet folder or hub id')
    p.add_argument('--teacher', required=True,
                   help='teacher pipeline or UNet folder / hub id')
    p.add_argument('--compression', required=True,
                   help='recipe type, e.g. SSD1B, BKSDMSmall')
    p.add_argument('--compression-args', default='{}',
                   help='recipe arguments as JSON, e.g. \'{"mid": "resnet"}\'')
    p.add_argument('--out', required=True, help='ControlNet folder to write')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    recipe = dict(type=args.compression, **json.loads(args.compression_args))
    try:
        dropped = transplant_controlnet_folder(
            args.controlnet, teacher_unet_config(args.teacher), args.out,
            recipe)
    except ValueError as err:
        raise SystemExit(f'{args.controlnet}: {err}')
    print(f'wrote {args.out}; dropped {len(dropped)} tensors of removed '
          'layers' + (':\n  ' + '\n  '.join(dropped) if dropped else ''))
    return dropped


if __name__ == '__main__':
    main()
