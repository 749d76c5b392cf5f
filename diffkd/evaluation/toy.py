"""Prompt following and teacher-student agreement on the toy world."""
from typing import Dict, List, Optional

import numpy as np
import torch

from diffkd.toy.score import toy_prompt_score
from diffkd.toy.shapes import all_combinations, caption_for


def toy_prompts(limit: Optional[int] = None) -> List[str]:
    """Every toy caption (90), or an evenly spread subset of ``limit``."""
    prompts = [caption_for(*c) for c in all_combinations()]
    if limit is not None and limit < len(prompts):
        idx = np.linspace(0, len(prompts) - 1, limit).round().astype(int)
        prompts = [prompts[i] for i in idx]
    return prompts


@torch.no_grad()
def sample(pipe, prompts: List[str], seed: int = 0, steps: int = 20,
           guidance: float = 4.0, output_type: str = 'pil'):
    pipe.set_progress_bar_config(disable=True)
    out = []
    for i, prompt in enumerate(prompts):
        gen = torch.Generator('cpu').manual_seed(seed + i)
        out.append(pipe(prompt, num_inference_steps=steps,
                        guidance_scale=guidance, generator=gen,
                        output_type=output_type).images[0])
    return out


def sample_grid(images: List, cols: int):
    """PIL images in rows of ``cols`` (diffusers' ``make_image_grid``); a
    last row that is not full is filled with black."""
    from diffusers.utils import make_image_grid
    from PIL import Image
    cols = min(cols, len(images))
    rows = -(-len(images) // cols)
    blank = Image.new('RGB', images[0].size)
    return make_image_grid(
        list(images) + [blank] * (rows * cols - len(images)), rows, cols)


def evaluate_toy_pipeline(pipe, prompts: Optional[List[str]] = None,
                          **kwargs) -> Dict:
    """Toy prompt-following score of a pipeline's samples."""
    prompts = prompts or toy_prompts()
    images = sample(pipe, prompts, **kwargs)
    result = toy_prompt_score(images, prompts)
    result['images'] = images
    result['prompts'] = prompts
    return result


def latent_distance(pipe_a, pipe_b, prompts: List[str], **kwargs) -> float:
    """Mean squared distance between two pipelines' final latents for the
    same prompts and seeds (teacher-student agreement)."""
    a = sample(pipe_a, prompts, output_type='latent', **kwargs)
    b = sample(pipe_b, prompts, output_type='latent', **kwargs)
    return float(torch.stack([(x - y).pow(2).mean() for x, y in zip(a, b)]
                             ).mean())


def evaluate_toy_concept(pipe, num_images: int = 16,
                         prompt: str = 'a sks circle', **kwargs) -> Dict:
    """How often a pipeline draws the toy DreamBooth concept (a ring) for
    ``prompt``, and in which colours."""
    from diffkd.toy.concept import concept_colour, concept_rate
    images = sample(pipe, [prompt] * num_images, **kwargs)
    colours: Dict[str, int] = {}
    for image in images:
        name = concept_colour(image) or 'none'
        colours[name] = colours.get(name, 0) + 1
    return dict(concept_rate=concept_rate(images), colours=colours,
                images=images)
