"""Few-step evaluation of toy pipelines against a many-step reference.

``python tools/analysis_tools/few_step_eval.py --model NAME PATH GUIDANCE
[--model ...] [--reference PATH GUIDANCE] [--steps 1 2 4 8 25]
[--num-prompts 90] [--seed 0] [--out FILE.json] [--markdown FILE.md]``

PATH is a work dir, an export folder or a ``diffkd-toy/<asset>`` id; each
pipeline samples with its own scheduler (LCMScheduler for LCM exports) at
GUIDANCE. Per model and step count: the toy prompt score, the latent MSE to
the reference (default: the toy SDXL teacher, 25 steps, CFG 4) and the
latency per image. Prints JSON. Logic: :mod:`diffkd.evaluation.few_step`.
"""
import argparse
import json
import sys

from diffkd.evaluation.few_step import (STEPS, Sampler, few_step_table,
                                        load_sampler_pipeline,
                                        markdown_table)
from diffkd.evaluation.toy import toy_prompts


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', nargs=3, action='append', required=True,
                   metavar=('NAME', 'PATH', 'GUIDANCE'))
    p.add_argument('--reference', nargs=2, metavar=('PATH', 'GUIDANCE'),
                   default=['diffkd-toy/sdxl-teacher', '4.0'])
    p.add_argument('--reference-steps', type=int, default=25)
    p.add_argument('--steps', type=int, nargs='+', default=list(STEPS))
    p.add_argument('--num-prompts', type=int, default=90)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--out', help='write the JSON here too')
    p.add_argument('--markdown', help='write the markdown table here')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    samplers = [Sampler(name, load_sampler_pipeline(path), float(g))
                for name, path, g in args.model]
    ref_path, ref_g = args.reference
    reference = Sampler(ref_path, load_sampler_pipeline(ref_path),
                        float(ref_g))
    result = few_step_table(samplers, reference, args.steps,
                            args.reference_steps,
                            toy_prompts(args.num_prompts), args.seed)
    text = json.dumps(result, indent=2)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    if args.markdown:
        with open(args.markdown, 'w') as f:
            f.write(markdown_table(result) + '\n')
    print(text)
    return result


if __name__ == '__main__':
    sys.exit(0 if main() else 1)
