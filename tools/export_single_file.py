"""Write a run's model as one original-layout checkpoint for A1111,
ComfyUI and diffusers' ``from_single_file``:
``python tools/export_single_file.py WORK_DIR --out model.safetensors``.

WORK_DIR is a work dir, an export folder or any diffusers SD/SDXL pipeline
folder. The file holds the UNet (``model.diffusion_model.*``), the VAE
(``first_stage_model.*``) and the family's text encoders in the LDM/SGM
key layout; diffusers loads it back with
``StableDiffusionXLPipeline.from_single_file(FILE, config=<pipeline
folder>)``. A LoRA run's adapter is fused in first (``--fuse-lora``) or
left out. See docs/export.md.
"""
import argparse
import os
import os.path as osp
import tempfile

import torch


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('work_dir',
                   help='work dir, export folder or pipeline folder')
    p.add_argument('--out', required=True, help='.safetensors file to write')
    p.add_argument('--dtype', choices=['float32', 'float16', 'bfloat16'],
                   default=None, help='cast the weights (default: as saved)')
    p.add_argument('--fuse-lora', action='store_true',
                   help='merge a LoRA export into the UNet first')
    return p.parse_args(argv)


def main(argv=None):
    from safetensors.torch import save_file

    from diffkd.export import export_pipeline_folder, is_pipeline_folder
    from diffkd.export.single_file import pipeline_to_single_file
    args = parse_args(argv)
    if not args.out.endswith('.safetensors'):
        raise SystemExit(f'--out {args.out}: give a .safetensors file name')
    dtype = getattr(torch, args.dtype) if args.dtype else None
    with tempfile.TemporaryDirectory(prefix='diffkd-single-') as tmp:
        folder = args.work_dir
        final = osp.join(folder, 'final')
        if not is_pipeline_folder(folder) and is_pipeline_folder(final) \
                and not args.fuse_lora:
            folder = final
        elif not is_pipeline_folder(folder) or args.fuse_lora:
            folder = export_pipeline_folder(
                args.work_dir, osp.join(tmp, 'pipe'),
                fuse_lora=args.fuse_lora)
        state = pipeline_to_single_file(folder, dtype=dtype)
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        save_file(state, args.out, metadata={'format': 'pt'})
    print(f'wrote {args.out} ({len(state)} tensors)')
    return args.out


if __name__ == '__main__':
    main()
