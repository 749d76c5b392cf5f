"""Exponential moving average of the trainable weights.

Exports and sample grids use the averaged weights while the optimizer keeps
training the raw ones; the average is saved in (and resumed from) mmengine
checkpoints.
"""
from contextlib import contextmanager
from typing import Dict

import torch
from mmengine.hooks import Hook

from diffkd.registry import HOOKS
from .export_hook import unwrap


@HOOKS.register_module()
class EMAHook(Hook):
    """``ema = decay * ema + (1 - decay) * weights`` after every step."""
    priority = 'NORMAL'

    def __init__(self, decay: float = 0.999, begin_iter: int = 0):
        if not 0.0 < decay < 1.0:
            raise ValueError(f'EMA decay must be in (0, 1), got {decay}')
        self.decay = decay
        self.begin_iter = begin_iter
        self.shadow: Dict[str, torch.Tensor] = {}

    def _trainable(self, model):
        return {n: p for n, p in model.named_parameters() if p.requires_grad}

    def before_train(self, runner):
        model = unwrap(runner.model)
        if not self.shadow:
            self.shadow = {
                n: p.detach().clone()
                for n, p in self._trainable(model).items()
            }
        runner.diffkd_ema = self

    @torch.no_grad()
    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        params = self._trainable(unwrap(runner.model))
        if runner.iter < self.begin_iter:
            for n, p in params.items():
                self.shadow[n].copy_(p)
            return
        for n, p in params.items():
            self.shadow[n].lerp_(p.detach(), 1.0 - self.decay)

    @contextmanager
    def swapped(self, model):
        """Temporarily load the averaged weights into ``model``."""
        params = self._trainable(model)
        saved = {n: p.detach().clone() for n, p in params.items()}
        with torch.no_grad():
            for n, p in params.items():
                p.copy_(self.shadow[n])
        try:
            yield model
        finally:
            with torch.no_grad():
                for n, p in params.items():
                    p.copy_(saved[n])

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['ema_state_dict'] = {
            k: v.cpu()
            for k, v in self.shadow.items()
        }

    def after_load_checkpoint(self, runner, checkpoint):
        state = checkpoint.get('ema_state_dict')
        if state:
            device = next(unwrap(runner.model).parameters()).device
            self.shadow = {k: v.to(device) for k, v in state.items()}
