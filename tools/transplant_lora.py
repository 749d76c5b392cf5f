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
import argparse
import json
import os.path as osp

from diffkd.export.transplant import teacher_unet_config, transplant_lora_file


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('lora', help='LoRA file or folder (diffusers format)')
    p.add_argument('--teacher', required=True,
                   help='teacher pipeline or UNet folder / hub id')
    p.add_argument('--compression', required=True,
                   help='recipe type, e.g. SSD1B, BKSDMSmall')
    p.add_argument('--compression-args', default='{}',
                   help='recipe arguments as JSON, e.g. \'{"mid": "resnet"}\'')
    p.add_argument('--out', required=True, help='.safetensors file to write')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    lora = args.lora
    if osp.isdir(lora):
        lora = osp.join(lora, 'pytorch_lora_weights.safetensors')
    if not osp.isfile(lora):
        raise SystemExit(f'{args.lora}: no diffusers LoRA file there')
    recipe = dict(type=args.compression, **json.loads(args.compression_args))
    dropped = transplant_lora_file(lora, teacher_unet_config(args.teacher),
                                   args.out, recipe)
    print(f'wrote {args.out}; dropped {len(dropped)} tensors of removed '
          'layers' + (':\n  ' + '\n  '.join(dropped) if dropped else ''))
    return dropped


if __name__ == '__main__':
    main()
