"""Few-step evaluation: each pipeline sampled at 1, 2, 4, 8 and 25 steps
against a many-step reference, on the toy prompts.

Per (pipeline, steps) cell: the toy prompt score of the samples, the mean
squared distance of their final latents to the reference's (same prompts,
same seeds) and the wall-clock latency per image of the pipeline call
(batch 1, text encoding and denoising; decoding is left out as it does not
depend on the steps).
"""
import time
from typing import Dict, List, NamedTuple, Optional, Sequence

import torch

from diffkd.models.diffusion.sampling import unscale_latents
from diffkd.toy.score import toy_prompt_score
from .toy import sample, toy_prompts

STEPS = (1, 2, 4, 8, 25)


class Sampler(NamedTuple):
    """A pipeline under evaluation and how it samples (its own scheduler,
    at ``guidance_scale``)."""
    name: str
    pipe: object
    guidance_scale: float


def load_sampler_pipeline(path: str):
    """A ``diffkd-toy/<asset>`` pipeline, or a diffkd work dir / export."""
    from diffkd.utils.hub import TOY_PREFIX, resolve_model_path
    if path.startswith(TOY_PREFIX):
        from diffusers import DiffusionPipeline
        return DiffusionPipeline.from_pretrained(resolve_model_path(path))
    from diffkd.apis import load_pipeline
    return load_pipeline(path)


@torch.no_grad()
def decode(pipe, latents: torch.Tensor) -> List:
    """Final latents -> PIL images, as the pipeline's own decoding."""
    latents = unscale_latents(pipe.vae.config, latents)
    image = pipe.vae.decode(latents.to(pipe.vae.dtype)).sample
    return pipe.image_processor.postprocess(image, output_type='pil')


def few_step_table(samplers: Sequence[Sampler],
                   reference: Sampler,
                   steps: Sequence[int] = STEPS,
                   reference_steps: int = 25,
                   prompts: Optional[List[str]] = None,
                   seed: int = 0) -> Dict:
    """Evaluate every sampler at every step count.

    Returns ``dict(rows=[{model, steps, prompt_score, colour_acc, shape_acc,
    background_acc, latent_mse, latency_s}...], reference=..., prompts=N)``;
    ``prompt_score`` is the fraction of images right in colour, shape and
    background together.
    """
    if not samplers:
        raise ValueError('few_step_table needs at least one pipeline')
    bad = [n for n in steps if int(n) < 1]
    if bad:
        raise ValueError(f'step counts must be >= 1, got {bad}')
    prompts = list(prompts or toy_prompts())
    ref = torch.stack(sample(reference.pipe, prompts, seed, reference_steps,
                             reference.guidance_scale, output_type='latent'))
    rows = []
    for s in samplers:
        for n in steps:
            start = time.perf_counter()
            latents = torch.stack(sample(s.pipe, prompts, seed, int(n),
                                         s.guidance_scale,
                                         output_type='latent'))
            latency = (time.perf_counter() - start) / len(prompts)
            score = toy_prompt_score(decode(s.pipe, latents), prompts)
            rows.append(dict(
                model=s.name, steps=int(n),
                guidance_scale=s.guidance_scale,
                scheduler=type(s.pipe.scheduler).__name__,
                prompt_score=score['all_acc'],
                colour_acc=score['colour_acc'],
                shape_acc=score['shape_acc'],
                background_acc=score['background_acc'],
                latent_mse=float((latents.float() - ref.float()).pow(2)
                                 .mean()),
                latency_s=latency))
    return dict(rows=rows, prompts=len(prompts),
                reference=dict(model=reference.name, steps=reference_steps,
                               guidance_scale=reference.guidance_scale))


def markdown_table(result: Dict) -> str:
    """The table as markdown: one row per model, one column group per step
    count, each cell ``score / MSE / ms``."""
    rows = result['rows']
    steps = sorted({r['steps'] for r in rows})
    models = list(dict.fromkeys(r['model'] for r in rows))
    cell = {(r['model'], r['steps']): r for r in rows}
    lines = ['| model | ' + ' | '.join(f'{n} step' + ('s' if n > 1 else '')
                                        for n in steps) + ' |',
             '|---|' + '---|' * len(steps)]
    for m in models:
        cells = []
        for n in steps:
            r = cell.get((m, n))
            cells.append('' if r is None else
                         f"{r['prompt_score']:.2f} / {r['latent_mse']:.3f} / "
                         f"{1000 * r['latency_s']:.0f} ms")
        lines.append(f'| {m} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)
