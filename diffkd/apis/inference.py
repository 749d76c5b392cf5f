"""Sampling from what a training run exported, and naming the images."""
import os
import os.path as osp
import unicodedata
from typing import Callable, List, Optional, Sequence

import torch


# Characters no file name may hold on Linux, macOS or Windows (with
# whitespace and control characters, see _slug).
UNSAFE_CHARACTERS = set('/\\:*?"<>|')
MAX_PROMPT_CHARACTERS = 60
MAX_FILENAME_BYTES = 200  # file systems allow 255 bytes


def _slug(prompt: str, max_chars: int, max_bytes: int) -> str:
    """The prompt's words joined by ``_``: control characters, path
    separators and characters Windows forbids separate words; no leading
    or trailing dots (hidden files, ``..``)."""
    words, word = [], []
    for ch in prompt:
        if ch.isspace() or ch in UNSAFE_CHARACTERS or \
                unicodedata.category(ch).startswith('C'):
            words.append(''.join(word))
            word = []
        else:
            word.append(ch)
    words.append(''.join(word))
    slug = '_'.join(w for w in words if w)[:max_chars]
    # Cut by bytes too (a character is up to 4), never inside a character.
    slug = slug.encode('utf-8')[:max_bytes].decode('utf-8', 'ignore')
    return slug.strip('._')


def sample_filename(index: int, prompt: str, seed: int) -> str:
    """``{index:03d}_{prompt words}_seed{seed}.png``: readable, unique per
    prompt index and seed, and a plain file name whatever the prompt holds
    (``'a cat/dog'`` gives ``000_a_cat_dog_seed0.png``)."""
    head, tail = f'{index:03d}_', f'_seed{seed}.png'
    budget = MAX_FILENAME_BYTES - len(head) - len(tail)
    slug = _slug(prompt, MAX_PROMPT_CHARACTERS, budget)
    return f'{head}{slug}{tail}' if slug else f'{head[:-1]}{tail}'


def sample_images(pipe, prompts: Sequence[str], out_dir: str,
                  negative_prompt: Optional[str] = None, steps: int = 25,
                  guidance: float = 7.5, seed: int = 0, num_images: int = 1,
                  height: Optional[int] = None, width: Optional[int] = None,
                  on_saved: Optional[Callable[[str], None]] = None
                  ) -> List[str]:
    """Sample ``num_images`` per prompt, the first with ``seed`` and each
    next one with the next seed (a CPU generator: the same images on any
    device), into ``out_dir`` as :func:`sample_filename` names them.
    Returns the paths; ``on_saved`` is called with each as it is written."""
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for i, prompt in enumerate(prompts):
        for _ in range(num_images):
            gen = torch.Generator('cpu').manual_seed(seed)
            image = pipe(
                prompt,
                negative_prompt=negative_prompt,
                num_inference_steps=steps,
                guidance_scale=guidance,
                height=height,
                width=width,
                generator=gen).images[0]
            path = osp.join(out_dir, sample_filename(i, prompt, seed))
            image.save(path)
            written.append(path)
            if on_saved is not None:
                on_saved(path)
            seed += 1
    return written
