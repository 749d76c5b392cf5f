"""How often a toy DreamBooth-LoRA run draws its concept, with the LoRA and
without it (same prompt, seeds and sampler):

``python tools/analysis_tools/concept_score.py WORK_DIR [--grid G.png]``
prints JSON; the grid holds the LoRA samples (top) and the base's (bottom).
"""
import argparse
import json
import sys

from diffkd.analysis.toy_scores import concept_score


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
    res = concept_score(args.work_dir, args.prompt, args.num_images,
                        steps=args.steps, guidance=args.guidance,
                        seed=args.seed, grid=args.grid)
    json.dump(res, sys.stdout, indent=2)
    sys.stdout.write('\n')
    return res


if __name__ == '__main__':
    main()
