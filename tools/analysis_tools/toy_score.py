"""Prompt-following score of a toy run's export (and, with --against,
latent agreement with another export, e.g. student vs teacher).

``python tools/analysis_tools/toy_score.py WORK_DIR [--against OTHER]``
prints JSON and writes the sample grid next to it with --grid.
"""
import argparse
import json
import sys

from diffkd.analysis.toy_scores import toy_score


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
    res = toy_score(args.work_dir, args.against, args.num_prompts,
                    steps=args.steps, guidance=args.guidance, seed=args.seed,
                    grid=args.grid)
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write('\n')
    return res


if __name__ == '__main__':
    main()
