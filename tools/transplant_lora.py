"""Carry a LoRA trained on a teacher onto a distilled student:
``python tools/transplant_lora.py LORA --teacher MODEL --compression SSD1B
--out student_lora.safetensors``.

LORA is diffusers' LoRA file (or a folder holding
``pytorch_lora_weights.safetensors``, e.g. a run's ``final/lora``).
MODEL is the teacher pipeline or UNet folder (hub id, path or
``diffkd-toy/...``). The recipe's module map moves each LoRA layer to the
student layer initialised from it and drops layers of removed blocks,
which are listed. Load the result with ``pipe.load_lora_weights(OUT)`` on
the student pipeline. See docs/export.md.
"""
import os.path as osp

from diffkd.export.transplant import (recipe_from_args, teacher_unet_config,
                                      transplant_lora_file, transplant_parser)


def parse_args(argv=None):
    return transplant_parser(
        __doc__.split('\n')[0], 'lora',
        'LoRA file or folder (diffusers format)',
        '.safetensors file to write').parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    lora = args.lora
    if osp.isdir(lora):
        lora = osp.join(lora, 'pytorch_lora_weights.safetensors')
    if not osp.isfile(lora):
        raise SystemExit(f'{args.lora}: no diffusers LoRA file there')
    recipe = recipe_from_args(args)
    dropped = transplant_lora_file(lora, teacher_unet_config(args.teacher),
                                   args.out, recipe)
    print(f'wrote {args.out}; dropped {len(dropped)} tensors of removed '
          'layers' + (':\n  ' + '\n  '.join(dropped) if dropped else ''))
    return dropped


if __name__ == '__main__':
    main()
