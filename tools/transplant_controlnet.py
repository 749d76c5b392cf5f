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

from diffkd.export.transplant import (recipe_from_args, teacher_unet_config,
                                      transplant_controlnet_folder,
                                      transplant_parser)


def parse_args(argv=None):
    return transplant_parser(
        __doc__.split('\n')[0], 'controlnet', 'ControlNet folder or hub id',
        'ControlNet folder to write').parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    recipe = recipe_from_args(args)
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
