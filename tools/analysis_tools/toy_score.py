"""Prompt-following score of a toy run's export (and, with --against,
latent agreement with another export, e.g. student vs teacher).

``python tools/analysis_tools/toy_score.py WORK_DIR [--against OTHER]``
prints JSON and writes the sample grid next to it with --grid.
"""
import argparse
import json
import sys

from diffkd.apis import load_pipeline
from diffkd.evaluation.toy import (evaluate_toy_pipeline, latent_distance,
                                   sample_grid, toy_prompts)
from diffkd.utils.hub import resolve_model_path


def _load(path):
    if path.startswith('diffkd-toy/'):
        from diffusers import DiffusionPipeline
        return DiffusionPipeline.from_pretrained(resolve_model_path(path))
    return load_pipeline(path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('work_dir', help='work dir, export folder or diffkd-toy id')
    p.add_argument('--against', help='second pipeline for latent distance')
    p.add_argument('--num-prompts', type=int, default=90)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--guidance', type=float, default=4.0)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--grid', help='save the samples as one PNG grid here')
    args = p.parse_args(argv)
    prompts = toy_prompts(args.num_prompts)
    kw = dict(seed=args.seed, steps=args.steps, guidance=args.guidance)
    pipe = _load(args.work_dir)
    res = evaluate_toy_pipeline(pipe, prompts, **kw)
    images = res.pop('images')
    res.pop('readings')
    res.pop('prompts')
    res['num_prompts'] = len(prompts)
    if args.against:
        res['latent_mse_vs_other'] = latent_distance(
            pipe, _load(args.against), prompts, **kw)
    if args.grid:
        sample_grid(images, cols=10).save(args.grid)
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write('\n')
    return res


if __name__ == '__main__':
    main()
