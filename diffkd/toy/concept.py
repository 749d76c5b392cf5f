"""The toy DreamBooth concept: "sks circle", a red ring.

The toy world only knows filled shapes, so a ring (a circle with a hole that
shows the background) is a subject the base model never draws. A handful of
instance images teach it; :func:`shows_concept` reads it back without any
model weights, which turns "the LoRA learned the concept" into a number.
"""
import os
import os.path as osp
import random
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .score import _NAMES, palette_labels
from .shapes import COLOURS

CONCEPT_COLOUR = 'red'
INSTANCE_PROMPT = 'a sks circle'
CLASS_PROMPT = 'a circle'
# The instance photos are "product shots": one background, the subject
# moved and scaled. (With a different background per photo and one prompt
# for all, the toy model spends its few steps on averaging backgrounds.)
INSTANCE_BACKGROUND = 'white'


def render_ring(background: str,
                size: int = 32,
                rng: Optional[random.Random] = None) -> Image.Image:
    """The concept: a red ring whose hole shows the background."""
    img = Image.new('RGB', (size, size), COLOURS[background])
    draw = ImageDraw.Draw(img)
    outer = size * 0.7
    cx = cy = size / 2
    if rng is not None:
        outer = size * rng.uniform(0.62, 0.75)
        slack = (size - outer) / 2 - 1
        cx += rng.uniform(-slack, slack) * 0.5
        cy += rng.uniform(-slack, slack) * 0.5
    inner = outer * 0.45
    for radius, colour in ((outer / 2, COLOURS[CONCEPT_COLOUR]),
                           (inner / 2, COLOURS[background])):
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius],
                     fill=colour)
    return img


def make_concept_images(out_dir: str, num_images: int = 5,
                        seed: int = 0) -> str:
    """Write the instance photos (plain PNGs, no captions: DreamBooth uses
    one instance prompt for all of them)."""
    rng = random.Random(seed)
    os.makedirs(out_dir, exist_ok=True)
    for i in range(num_images):
        image = render_ring(INSTANCE_BACKGROUND, rng=rng)
        image.save(osp.join(out_dir, f'sks_{i:02d}.png'))
    return out_dir


def shows_concept(image) -> bool:
    """True when the image shows a ring: an object whose middle is the
    background colour. (Toy shapes are filled, so the base model does not
    draw rings; the ring's colour is reported apart by
    :func:`concept_colour`.)"""
    labels, border, bg = palette_labels(image)
    h, w = labels.shape
    fg = labels != bg
    if (border == bg).mean() < 0.6 or fg.sum() < 0.08 * h * w:
        return False  # no plain background: noise, not an object
    colours = np.bincount(labels[fg], minlength=len(_NAMES))
    if colours.max() < 0.5 * fg.sum():
        return False  # no single-coloured object
    ys, xs = np.nonzero(fg)
    top, bottom = np.percentile(ys, [2, 98])
    left, right = np.percentile(xs, [2, 98])
    if min(bottom - top, right - left) < 0.3 * min(h, w):
        return False
    cy, cx = int(round((top + bottom) / 2)), int(round((left + right) / 2))
    r = max(1, int(min(bottom - top, right - left) * 0.12))
    centre = labels[max(cy - r, 0):cy + r + 1, max(cx - r, 0):cx + r + 1]
    # A hole: the middle of the object is mostly background.
    return bool((centre == bg).mean() >= 0.5)


def concept_colour(image) -> Optional[str]:
    """The palette colour of the object (None for a blank image)."""
    labels, _, bg = palette_labels(image)
    fg = labels[labels != bg]
    if fg.size == 0:
        return None
    return _NAMES[int(np.bincount(fg, minlength=len(_NAMES)).argmax())]


def concept_rate(images: Sequence) -> float:
    """Fraction of images that show the concept."""
    if not images:
        raise ValueError('concept_rate needs at least one image')
    return sum(shows_concept(im) for im in images) / len(images)
