"""Load what a training run exported as a plain diffusers pipeline, and
name the images sampled from it."""
import json
import os
import os.path as osp
import unicodedata
from typing import Dict, Optional

import torch

from diffkd.models.diffusion.loading import (WEIGHT_SUFFIXES,
                                             CorruptWeightsError,
                                             load_component,
                                             weight_file_problem)
from diffkd.models.diffusion.stable_diffusion import load_scheduler
from diffkd.utils.hub import resolve_model_path

EXPORT_INFO = 'export_info.json'
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


def find_export(path: str) -> str:
    """The export folder for a work dir (its ``final/``) or an export dir."""
    if osp.isfile(osp.join(path, EXPORT_INFO)):
        return path
    final = osp.join(path, 'final')
    if osp.isfile(osp.join(final, EXPORT_INFO)):
        return final
    raise FileNotFoundError(
        f'{path} has no diffkd export: expected {EXPORT_INFO} in it or in '
        f'{final} (has the training run finished?)')


def load_export_info(path: str) -> Dict:
    with open(osp.join(find_export(path), EXPORT_INFO)) as f:
        return json.load(f)


def load_pipeline(path: str,
                  base_model: Optional[str] = None,
                  torch_dtype: torch.dtype = torch.float32,
                  device: str = 'cpu'):
    """The base pipeline named in the export, with the trained parts in.

    ``path`` is a work dir or one of its export folders (``final``,
    ``iter_N``); ``base_model`` overrides the pipeline the run started from.
    """
    import diffusers
    from diffusers import UNet2DConditionModel
    export = find_export(path)
    info = load_export_info(export)
    base = resolve_model_path(base_model or info['base_model'])
    cls = getattr(diffusers, info.get('pipeline_class', 'DiffusionPipeline'))
    kwargs = {}
    # Through the training's own loader: a damaged weight file is named,
    # with what is wrong with it.
    if 'unet' in info.get('parts', []):
        kwargs['unet'] = load_component(
            UNet2DConditionModel, export, subfolder='unet',
            torch_dtype=torch_dtype)
    elif info.get('base_unet'):
        # e.g. a LoRA trained on a distilled student's UNet
        kwargs['unet'] = load_component(
            UNet2DConditionModel, info['base_unet'], torch_dtype=torch_dtype)
    if 'scheduler' in info.get('parts', []):
        # e.g. LCMScheduler for a consistency-distilled UNet or LoRA
        kwargs['scheduler'] = load_scheduler(export)
    if cls.__name__ == 'StableDiffusionPipeline':
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    pipe = cls.from_pretrained(base, torch_dtype=torch_dtype, **kwargs)
    if 'lora' in info.get('parts', []):
        _load_lora(pipe, export)
    return pipe.to(device)


def _load_lora(pipe, export: str) -> None:
    folder = osp.join(export, 'lora')
    try:
        pipe.load_lora_weights(folder)
    except Exception as err:
        names = sorted(os.listdir(folder)) if osp.isdir(folder) else []
        bad = [(p, weight_file_problem(p))
               for p in (osp.join(folder, n) for n in names
                         if n.endswith(WEIGHT_SUFFIXES))]
        bad = [(p, why) for p, why in bad if why]
        if bad:
            files = '; '.join(f'{p} {why}' for p, why in bad)
            raise CorruptWeightsError(
                f'cannot load the LoRA of {export}: weight file {files}. '
                'Re-download or re-export it.') from err
        raise
