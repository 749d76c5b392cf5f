"""How often a toy DreamBooth-LoRA run draws its concept, with the LoRA and
without it (same prompt, seeds and sampler):

``python tools/analysis_tools/concept_score.py WORK_DIR [--grid G.png]``
prints JSON; the grid holds the LoRA samples (top) and the base's (bottom).
"""
import argparse
import json
import sys

from diffkd.apis import load_pipeline
from diffkd.evaluation.toy import evaluate_toy_concept


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('work_dir', help='work dir or export folder of a LoRA run')
    p.add_argument('--prompt', default='a sks circle')
    p.add_argument('--num-images', type=int, default=16)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--guidance', type=float, default=2.0)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--grid', help='save both sample rows as one PNG here')
    args = p.parse_args(argv)
    kw = dict(num_images=args.num_images, prompt=args.prompt,
              seed=args.seed, steps=args.steps, guidance=args.guidance)
    pipe = load_pipeline(args.work_dir)
    if not pipe.get_list_adapters():
        raise SystemExit(f'{args.work_dir} holds no LoRA export')
    with_lora = evaluate_toy_concept(pipe, **kw)
    pipe.unload_lora_weights()
    without = evaluate_toy_concept(pipe, **kw)
    res = dict(prompt=args.prompt, num_images=args.num_images,
               with_lora=dict(rate=with_lora['concept_rate'],
                              colours=with_lora['colours']),
               without_lora=dict(rate=without['concept_rate'],
                                 colours=without['colours']))
    if args.grid:
        from diffusers.utils import make_image_grid
        make_image_grid(with_lora['images'] + without['images'], rows=2,
                        cols=args.num_images).save(args.grid)
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write('\n')
    return res


if __name__ == '__main__':
    main()
