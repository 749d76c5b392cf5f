"""Sample fixed prompts with fixed seeds during training.

Every ``interval`` iterations and at the end, one image per prompt is drawn
and the grid is saved as ``<work_dir>/vis/iter_<n>.png`` and sent to the
runner's visualizer (local backend always; TensorBoard when configured).
A distiller's grid has two rows, the teacher's images above the student's
for the same prompts and seeds; the prompts are written under the columns.
"""
import os
import os.path as osp
from contextlib import nullcontext
from typing import Dict, List, Optional, Sequence

import numpy as np
from diffusers.utils import make_image_grid
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from PIL import Image, ImageDraw, ImageFont

from diffkd.registry import HOOKS
from ..distributed import full_weights
from .export_hook import unwrap


def make_grid(images: Sequence, ncols: Optional[int] = None) -> Image.Image:
    """Tile PIL images of equal size into one image."""
    if not images:
        raise ValueError('make_grid needs at least one image')
    ncols = ncols or min(len(images), 8)
    nrows = (len(images) + ncols - 1) // ncols
    w, h = images[0].size
    grid = Image.new('RGB', (ncols * w, nrows * h), (0, 0, 0))
    for i, im in enumerate(images):
        grid.paste(im.convert('RGB'), ((i % ncols) * w, (i // ncols) * h))
    return grid


def _wrap(draw, text: str, font, width: int) -> List[str]:
    """``text`` in lines no wider than ``width`` pixels (a word longer than
    that keeps a line of its own)."""
    lines: List[str] = []
    for word in text.split():
        if lines and draw.textlength(f'{lines[-1]} {word}', font=font) \
                <= width:
            lines[-1] += f' {word}'
        else:
            lines.append(word)
    return lines or ['']


def sample_grid(rows: Sequence[Sequence[Image.Image]],
                captions: Sequence[str],
                row_labels: Optional[Sequence[str]] = None,
                upscale: int = 1) -> Image.Image:
    """One row of images per model, one column per prompt, each column's
    caption written under it and each row's label left of it.

    Images are enlarged ``upscale`` times (nearest neighbour) before the
    text is drawn, so the text stays sharp on small images.
    """
    ncols = len(captions)
    if not rows or any(len(r) != ncols for r in rows):
        raise ValueError(f'sample_grid needs rows of {ncols} images (one '
                         f'per caption), got {[len(r) for r in rows]}')
    images = make_image_grid(
        [im.convert('RGB') for r in rows for im in r], len(rows), ncols)
    if upscale > 1:
        images = images.resize(
            (images.width * upscale, images.height * upscale), Image.NEAREST)
    col_w, row_h = images.width // ncols, images.height // len(rows)
    font = ImageFont.load_default(size=max(10, col_w // 20))
    draw = ImageDraw.Draw(images)
    pad = 4
    line_h = sum(font.getmetrics()) + 2
    wrapped = [_wrap(draw, c, font, col_w - 2 * pad) for c in captions]
    caption_h = 2 * pad + line_h * max(len(w) for w in wrapped)
    label_w = 0
    if row_labels:
        label_w = 2 * pad + int(max(draw.textlength(t, font=font)
                                    for t in row_labels))
    grid = Image.new('RGB', (label_w + images.width,
                             images.height + caption_h), 'white')
    grid.paste(images, (label_w, 0))
    draw = ImageDraw.Draw(grid)
    for i, label in enumerate(row_labels or []):
        draw.text((pad, i * row_h + (row_h - line_h) // 2), label,
                  fill='black', font=font)
    for j, lines in enumerate(wrapped):
        for k, line in enumerate(lines):
            draw.text((label_w + j * col_w + pad,
                       images.height + pad + k * line_h),
                      line, fill='black', font=font)
    return grid


@HOOKS.register_module()
class VisualizationHook(Hook):
    priority = 'LOW'

    def __init__(self,
                 prompts: List[str],
                 seeds: Optional[List[int]] = None,
                 interval: int = 0,
                 num_inference_steps: int = 25,
                 guidance_scale: float = 7.5,
                 height: Optional[int] = None,
                 width: Optional[int] = None,
                 upscale: int = 1):
        if not prompts:
            raise ValueError('VisualizationHook needs at least one prompt')
        self.prompts = list(prompts)
        self.seeds = list(seeds) if seeds is not None else list(
            range(len(self.prompts)))
        if len(self.seeds) != len(self.prompts):
            raise ValueError(f'{len(self.seeds)} seeds for '
                             f'{len(self.prompts)} prompts')
        self.interval = interval
        self.kwargs = dict(
            num_inference_steps=num_inference_steps,
            guidance_scale=guidance_scale,
            height=height,
            width=width)
        self.upscale = upscale
        # The teacher is frozen: its row is sampled once per teacher.
        self._teacher_row: Dict[str, List[Image.Image]] = {}

    def _rows(self, model) -> Dict[str, List[Image.Image]]:
        """The sampled rows by label: the teacher's (for a distiller) and
        the model's own."""
        # Models that sample their teacher on request (sampling.teacher,
        # DiffusionDistiller); a consistency distiller's teacher is no
        # few-step sampler, so its grid has the student's row only.
        teacher = getattr(model, 'teacher', None) \
            if getattr(model, 'samples_teacher', False) else None
        source = getattr(model, 'teacher_source', None)
        with_teacher = teacher is not None and \
            source not in self._teacher_row
        samples = model(
            dict(text=self.prompts, seed=self.seeds,
                 sampling=dict(self.kwargs, teacher=True)
                 if with_teacher else self.kwargs),
            mode='predict')
        rows = {}
        if with_teacher:
            self._teacher_row[source] = [
                Image.fromarray(s['teacher_image']) for s in samples]
        if teacher is not None:
            rows['teacher'] = self._teacher_row[source]
            rows['student'] = [Image.fromarray(s['image']) for s in samples]
        else:
            rows[''] = [Image.fromarray(s['image']) for s in samples]
        return rows

    def _visualize(self, runner, step: int):
        # Every rank enters (FSDP gathers the shards); rank 0 samples.
        with full_weights(runner.model):
            if not is_main_process():
                return
            model = unwrap(runner.model)
            ema = getattr(runner, 'diffkd_ema', None)
            with (ema.swapped(model) if ema is not None else nullcontext()):
                rows = self._rows(model)
        labels = list(rows) if len(rows) > 1 else None
        grid = sample_grid(list(rows.values()), self.prompts, labels,
                           self.upscale)
        out_dir = osp.join(runner.work_dir, 'vis')
        os.makedirs(out_dir, exist_ok=True)
        path = osp.join(out_dir, f'iter_{step}.png')
        grid.save(path)
        runner.visualizer.add_image('samples', np.asarray(grid), step=step)
        runner.logger.info(
            f'saved samples of {len(self.prompts)} prompts'
            + (f' ({" and ".join(labels)} rows)' if labels else '')
            + f' to {path}')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.interval and self.every_n_train_iters(runner, self.interval) \
                and runner.iter + 1 < runner.max_iters:
            self._visualize(runner, runner.iter + 1)

    def after_train(self, runner):
        self._visualize(runner, runner.iter)
