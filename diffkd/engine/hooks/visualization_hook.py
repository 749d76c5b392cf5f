"""Sample fixed prompts with fixed seeds during training.

Every ``interval`` iterations and at the end, one image per prompt is drawn
and the grid is saved as ``<work_dir>/vis/iter_<n>.png`` and sent to the
runner's visualizer (local backend always; TensorBoard when configured).
"""
import os
import os.path as osp
from contextlib import nullcontext
from typing import List, Optional, Sequence

import numpy as np
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from PIL import Image

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

    def _visualize(self, runner, step: int):
        # Every rank enters (FSDP gathers the shards); rank 0 samples.
        with full_weights(runner.model):
            if not is_main_process():
                return
            model = unwrap(runner.model)
            ema = getattr(runner, 'diffkd_ema', None)
            with (ema.swapped(model) if ema is not None else nullcontext()):
                images = model.generate(self.prompts, seeds=self.seeds,
                                        **self.kwargs)
        grid = make_grid(images)
        if self.upscale > 1:
            grid = grid.resize((grid.width * self.upscale,
                                grid.height * self.upscale), Image.NEAREST)
        out_dir = osp.join(runner.work_dir, 'vis')
        os.makedirs(out_dir, exist_ok=True)
        path = osp.join(out_dir, f'iter_{step}.png')
        grid.save(path)
        runner.visualizer.add_image('samples', np.asarray(grid), step=step)
        runner.logger.info(f'saved samples of {len(images)} prompts to '
                           f'{path}')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.interval and self.every_n_train_iters(runner, self.interval) \
                and runner.iter + 1 < runner.max_iters:
            self._visualize(runner, runner.iter + 1)

    def after_train(self, runner):
        self._visualize(runner, runner.iter)
