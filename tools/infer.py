"""Sample images from a finished run: ``python tools/infer.py WORK_DIR``.

Loads ``WORK_DIR/final`` (or any export folder) on top of the base pipeline
named in it, with plain diffusers, and writes one PNG per prompt and seed
(``000_a_red_circle_seed0.png``: see ``diffkd.apis.sample_filename``).
"""
import argparse
from functools import partial

import torch

from diffkd.apis import load_pipeline, sample_images


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Sample from a diffkd export')
    p.add_argument('work_dir', help='work dir of a run, or an export folder')
    p.add_argument('--prompt', nargs='+', required=True,
                   help='one or more prompts')
    p.add_argument('--negative-prompt', default=None)
    p.add_argument('--steps', type=int, default=25)
    p.add_argument('--guidance', type=float, default=7.5)
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the first image; later images count up')
    p.add_argument('--num-images', type=int, default=1,
                   help='images per prompt')
    p.add_argument('--height', type=int, default=None)
    p.add_argument('--width', type=int, default=None)
    p.add_argument('--base-model', default=None,
                   help='override the base pipeline recorded in the export')
    p.add_argument('--device', default='cuda' if torch.cuda.is_available()
                   else 'cpu')
    p.add_argument('--dtype', choices=['float32', 'float16', 'bfloat16'],
                   default='float32')
    p.add_argument('--out', default='infer_out', help='output folder')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    pipe = load_pipeline(args.work_dir, base_model=args.base_model,
                         torch_dtype=getattr(torch, args.dtype),
                         device=args.device)
    return sample_images(
        pipe, args.prompt, args.out, negative_prompt=args.negative_prompt,
        steps=args.steps, guidance=args.guidance, seed=args.seed,
        num_images=args.num_images, height=args.height, width=args.width,
        on_saved=partial(print, flush=True))


if __name__ == '__main__':
    main()
