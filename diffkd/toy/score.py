"""Deterministic prompt-following score for the toy world (no weights).

Reads an image the way the toy dataset draws them: the background colour is
the palette colour of the border, the foreground is every pixel whose nearest
palette colour differs from it, its colour is the majority palette colour and
its shape follows from how much of its bounding box it fills (square ~1.0,
circle ~0.79, triangle ~0.5).
"""
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .shapes import COLOURS, parse_caption

_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[n] for n in _NAMES], dtype=np.float32)


def _nearest_palette(pixels: np.ndarray) -> np.ndarray:
    d = ((pixels[..., None, :].astype(np.float32) - _PALETTE)**2).sum(-1)
    return d.argmin(-1)


def palette_labels(image) -> Tuple[np.ndarray, np.ndarray, int]:
    """Per-pixel palette indices, the border's indices, and the background
    (the border's majority colour)."""
    arr = np.asarray(image.convert('RGB') if hasattr(image, 'convert')
                     else image)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f'expected an HxWx3 image, got shape {arr.shape}')
    labels = _nearest_palette(arr)
    border = np.concatenate(
        [labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    return labels, border, int(
        np.bincount(border, minlength=len(_NAMES)).argmax())


def read_toy_image(image) -> Optional[Dict[str, str]]:
    """Return the ``colour``, ``shape`` and ``background`` an image shows.

    ``None`` when no foreground object is visible.
    """
    labels, _, bg = palette_labels(image)
    h, w = labels.shape
    fg_mask = labels != bg
    area = int(fg_mask.sum())
    if area < 0.03 * h * w:
        return None
    fg = int(np.bincount(labels[fg_mask], minlength=len(_NAMES)).argmax())
    # The shape is read from the majority colour's pixels only, so stray
    # pixels of other colours at anti-aliased edges do not widen the box.
    mask = labels == fg
    ys, xs = np.nonzero(mask)
    top, bottom = np.percentile(ys, [1, 99])
    left, right = np.percentile(xs, [1, 99])
    box_area = (bottom - top + 1) * (right - left + 1)
    fill = mask.sum() / max(box_area, 1.0)
    # Triangles point up: their top third is much narrower than the bottom.
    rows = np.nonzero(mask.any(1))[0]
    third = max(len(rows) // 3, 1)
    top_w = mask[rows[:third]].sum(1).mean()
    bottom_w = mask[rows[-third:]].sum(1).mean()
    if fill < 0.66 or top_w < 0.6 * bottom_w:
        shape = 'triangle'
    elif fill > 0.9:
        shape = 'square'
    else:
        shape = 'circle'
    return dict(colour=_NAMES[fg], shape=shape, background=_NAMES[bg])


def toy_prompt_score(images: Sequence, prompts: Sequence[str]) -> Dict:
    """Fraction of images that show what their prompt asks for.

    Returns accuracies for colour, shape, background and all three together,
    plus per-image readings. Prompts that name no toy object are an error.
    """
    if len(images) != len(prompts):
        raise ValueError(f'{len(images)} images but {len(prompts)} prompts')
    if not prompts:
        raise ValueError('toy_prompt_score needs at least one image')
    hits = dict(colour=0, shape=0, background=0, all=0)
    readings: List[Optional[Dict[str, str]]] = []
    for image, prompt in zip(images, prompts):
        want = parse_caption(prompt)
        if want is None:
            raise ValueError(
                f'prompt {prompt!r} names no toy colour, shape and '
                "background (e.g. 'a red circle on a blue background')")
        got = read_toy_image(image)
        readings.append(got)
        if got is None:
            continue
        ok = [got[k] == want[k] for k in ('colour', 'shape', 'background')]
        for key, good in zip(('colour', 'shape', 'background'), ok):
            hits[key] += int(good)
        hits['all'] += int(all(ok))
    n = len(prompts)
    result = {f'{k}_acc': v / n for k, v in hits.items()}
    result['readings'] = readings
    return result
