"""How often a teacher's toy DreamBooth-LoRA draws its concept on the
teacher, transplanted onto the distilled student with no KD, and after the
short KD pass (same prompt, seeds and sampler):

``python tools/analysis_tools/transplant_score.py TEACHER_LORA_RUN
STUDENT_RUN [--kd KD_RUN] [--json]`` prints a Markdown table (docs/results.md,
"Transplant"), or the rows as JSON.
"""
import argparse
import json
import sys

from diffkd.analysis.toy_scores import concept_table, transplant_concept_rates
from diffkd.export.transplant import recipe_from_args


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument('teacher_lora_run',
                   help="work dir or export of the teacher's LoRA run")
    p.add_argument('student_run',
                   help='work dir or export of the distilled student')
    p.add_argument('--kd', help='work dir or export of the short KD pass '
                   '(configs/toy/ssd_1b_lora_transplant_toy.py)')
    p.add_argument('--compression', default='SSD1B',
                   help="the student's recipe type")
    p.add_argument('--compression-args', default='{}',
                   help='recipe arguments as JSON')
    p.add_argument('--prompt', default='a sks circle')
    p.add_argument('--num-images', type=int, default=16)
    p.add_argument('--steps', type=int, default=20)
    p.add_argument('--guidance', type=float, default=2.0)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--json', action='store_true', help='print the rows')
    args = p.parse_args(argv)
    rows = transplant_concept_rates(
        args.teacher_lora_run, args.student_run, args.kd,
        recipe_from_args(args),
        prompt=args.prompt, num_images=args.num_images, steps=args.steps,
        guidance=args.guidance, seed=args.seed)
    if args.json:
        json.dump(rows, sys.stdout, indent=2)
    else:
        sys.stdout.write(concept_table(rows, args.num_images))
    sys.stdout.write('\n')
    return rows


if __name__ == '__main__':
    main()
