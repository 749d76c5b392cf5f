"""The toy world's data: coloured shapes on coloured backgrounds.

Images are written as an ``imagefolder`` with ``metadata.jsonl`` so they go
through the same loader as user data. Everything is a pure function of the
seed, so two machines produce byte-identical datasets.
"""
import json
import os
import os.path as osp
import random
from typing import Dict, List, Optional, Tuple

from PIL import Image, ImageDraw

# Saturated, well separated colours: the toy score tells them apart by
# nearest palette entry.
COLOURS: Dict[str, Tuple[int, int, int]] = {
    'red': (220, 40, 40),
    'green': (40, 180, 60),
    'blue': (40, 70, 220),
    'yellow': (235, 215, 40),
    'white': (240, 240, 240),
    'black': (20, 20, 20),
}
SHAPES: Tuple[str, ...] = ('circle', 'square', 'triangle')
CAPTION_TEMPLATE = 'a {colour} {shape} on a {background} background'


def caption_for(colour: str, shape: str, background: str) -> str:
    return CAPTION_TEMPLATE.format(
        colour=colour, shape=shape, background=background)


def parse_caption(caption: str) -> Optional[Dict[str, str]]:
    """Return ``{'colour', 'shape', 'background'}`` named in a caption.

    Understands the template's wording anywhere in a longer prompt; returns
    None when the caption does not name a toy colour, shape and background.
    """
    words = caption.lower().replace(',', ' ').split()
    shape_idx = [i for i, w in enumerate(words) if w in SHAPES]
    if not shape_idx:
        return None
    i = shape_idx[0]
    colour = words[i - 1] if i > 0 and words[i - 1] in COLOURS else None
    background = None
    for j in range(i + 1, len(words) - 1):
        if words[j] in COLOURS and words[j + 1] == 'background':
            background = words[j]
            break
    if colour is None or background is None:
        return None
    return dict(colour=colour, shape=words[i], background=background)


def all_combinations() -> List[Tuple[str, str, str]]:
    """Every (colour, shape, background) with distinct fg and bg colours."""
    return [(c, s, b) for c in COLOURS for s in SHAPES for b in COLOURS
            if b != c]


def _draw_shape(draw, shape: str, fill, cx: float, cy: float,
                half: float) -> None:
    """``shape`` in a square of side ``2 * half`` centred on (cx, cy)."""
    box = [cx - half, cy - half, cx + half, cy + half]
    if shape == 'circle':
        draw.ellipse(box, fill=fill)
    elif shape == 'square':
        draw.rectangle(box, fill=fill)
    elif shape == 'triangle':
        draw.polygon([(cx, cy - half), (cx + half, cy + half),
                      (cx - half, cy + half)], fill=fill)
    else:
        raise ValueError(f'unknown toy shape {shape!r}; known: {SHAPES}')


def render_shape(colour: str,
                 shape: str,
                 background: str,
                 size: int = 32,
                 rng: Optional[random.Random] = None) -> Image.Image:
    """Draw one shape; position and scale jitter when ``rng`` is given."""
    img = Image.new('RGB', (size, size), COLOURS[background])
    draw = ImageDraw.Draw(img)
    extent = size * 0.55
    cx = cy = size / 2
    if rng is not None:
        extent = size * rng.uniform(0.45, 0.65)
        slack = (size - extent) / 2 - 1
        cx += rng.uniform(-slack, slack) * 0.6
        cy += rng.uniform(-slack, slack) * 0.6
    half = extent / 2
    _draw_shape(draw, shape, COLOURS[colour], cx, cy, half)
    return img


def make_shapes_dataset(out_dir: str,
                        num_images: int = 512,
                        size: int = 32,
                        seed: int = 0) -> str:
    """Write ``num_images`` captioned images as an imagefolder.

    Combinations are cycled so every (colour, shape, background) appears
    equally often; jitter comes from ``seed``. Returns ``out_dir``.
    """
    rng = random.Random(seed)
    combos = all_combinations()
    os.makedirs(osp.join(out_dir, 'images'), exist_ok=True)
    rows = []
    order: List[Tuple[str, str, str]] = []
    while len(order) < num_images:
        block = combos[:]
        rng.shuffle(block)
        order.extend(block)
    for i, (colour, shape, bg) in enumerate(order[:num_images]):
        name = f'images/{i:05d}.png'
        render_shape(colour, shape, bg, size, rng).save(osp.join(out_dir, name))
        rows.append(dict(file_name=name, text=caption_for(colour, shape, bg)))
    tmp = osp.join(out_dir, 'metadata.jsonl.tmp')
    with open(tmp, 'w') as f:
        for row in rows:
            f.write(json.dumps(row) + '\n')
    os.replace(tmp, osp.join(out_dir, 'metadata.jsonl'))
    return out_dir



# The multi-aspect set's image sizes (h, w): square, landscape and
# portrait, some exactly a toy bucket (32x32, 32x48, 48x32), some not, so
# resizing to cover and cropping are both exercised.
MULTIASPECT_SIZES: Tuple[Tuple[int, int], ...] = (
    (32, 32), (40, 40), (32, 48), (48, 32), (40, 60), (60, 40), (34, 44),
    (44, 34))


def render_shape_rect(colour: str, shape: str, background: str,
                      height: int, width: int,
                      rng: random.Random) -> Image.Image:
    """A shape on a ``width`` x ``height`` canvas: scaled to the short
    side, placed anywhere along the long one."""
    img = Image.new('RGB', (width, height), COLOURS[background])
    draw = ImageDraw.Draw(img)
    side = min(width, height)
    extent = side * rng.uniform(0.45, 0.65)
    half = extent / 2
    cx = rng.uniform(half + 1, width - half - 1)
    cy = rng.uniform(half + 1, height - half - 1)
    _draw_shape(draw, shape, COLOURS[colour], cx, cy, half)
    return img


def make_multiaspect_shards(out_dir: str, num_images: int = 512,
                            samples_per_shard: int = 32,
                            seed: int = 2) -> Dict:
    """Write ``num_images`` captioned shapes of the sizes in
    :data:`MULTIASPECT_SIZES` as WebDataset shards in img2dataset's layout
    (``00000.tar`` ...: ``KEY.png``, ``KEY.txt``, ``KEY.json``) and a
    ``manifest.json`` as ``images_to_shards.py`` writes it (sample count,
    shards, size histogram); returns the manifest."""
    import io
    from collections import Counter

    import webdataset as wds
    rng = random.Random(seed)
    combos = all_combinations()
    os.makedirs(out_dir, exist_ok=True)
    shards, sizes = [], Counter()
    for first in range(0, num_images, samples_per_shard):
        name = f'{first // samples_per_shard:05d}.tar'
        count = 0
        with wds.TarWriter(osp.join(out_dir, name), mtime=0) as sink:
            for i in range(first, min(first + samples_per_shard,
                                      num_images)):
                colour, shape, bg = combos[rng.randrange(len(combos))]
                h, w = MULTIASPECT_SIZES[i % len(MULTIASPECT_SIZES)]
                buf = io.BytesIO()
                render_shape_rect(colour, shape, bg, h, w, rng).save(
                    buf, 'PNG')
                caption = caption_for(colour, shape, bg)
                sink.write({'__key__': f'{i:09d}', 'png': buf.getvalue(),
                            'txt': caption.encode(),
                            'json': json.dumps(dict(
                                caption=caption, width=w, height=h)).encode()})
                sizes[f'{h}x{w}'] += 1
                count += 1
        shards.append(dict(name=name, count=count))
    manifest = dict(
        num_samples=num_images, num_skipped=0, skipped=[], shards=shards,
        pattern=f'{{00000..{len(shards) - 1:05d}}}.tar',
        size_histogram=dict(sorted(sizes.items())))
    with open(osp.join(out_dir, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    return manifest
