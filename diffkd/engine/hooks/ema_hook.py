"""Exponential moving average of the trainable weights only, through
mmengine's ``EMAHook`` and its averaged models (``ExponentialMovingAverage``
by default, ``momentum`` = 1 - decay).

mmengine's ``EMAHook`` averages a deep copy of the whole model: a
distiller's frozen teacher, VAE and text encoders would be copied for
nothing, and diffkd models leave frozen children out of their state dicts,
which empties that copy's (its ``ema_state_dict`` would hold no weights).
:class:`TrainableEMAHook` hands mmengine's averaged model a view of the
trainable parameters (a student UNet, or only LoRA layers) under their names
in the model, so mmengine's update, its checkpoint swap (the checkpoint's
``state_dict`` holds the averaged weights, ``ema_state_dict`` the raw ones)
and its resume work unchanged. Exports and sample grids use the averaged
weights through ``runner.diffkd_ema.swapped(model)``.
"""
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.hooks import EMAHook
from mmengine.registry import MODELS

from diffkd.registry import HOOKS, ConfigKeyError
from .export_hook import unwrap


class TrainableParameters(nn.Module):
    """The parameters of ``model`` that require grad, registered under their
    names in ``model`` (shared with it, not copied)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        for name, param in model.named_parameters():
            if not param.requires_grad:
                continue
            *path, leaf = name.split('.')
            owner = self
            for part in path:
                if part not in owner._modules:
                    owner.add_module(part, nn.Module())
                owner = owner._modules[part]
            owner.register_parameter(leaf, param)


@HOOKS.register_module()
class TrainableEMAHook(EMAHook):
    """mmengine's ``EMAHook`` over the trainable parameters only.

    Takes mmengine's arguments: ``momentum`` (ema = (1 - momentum) * ema +
    momentum * weights; the former diffkd ``EMAHook(decay=d)`` is
    ``momentum=1 - d``), ``ema_type``, ``begin_iter``, ``interval``...
    """

    def __init__(self, ema_type: str = 'ExponentialMovingAverage',
                 strict_load: bool = False, begin_iter: int = 0,
                 begin_epoch: int = 0, **kwargs):
        if 'decay' in kwargs:
            decay = kwargs['decay']
            raise ConfigKeyError(
                f'TrainableEMAHook takes momentum = 1 - decay (mmengine\'s '
                f'convention): write momentum={1 - decay:g} instead of '
                f'decay={decay}')
        super().__init__(ema_type, strict_load, begin_iter, begin_epoch,
                         **kwargs)

    def before_run(self, runner) -> None:
        self.src_model = TrainableParameters(unwrap(runner.model))
        if not any(True for _ in self.src_model.parameters()):
            raise ValueError(
                f'TrainableEMAHook: {type(unwrap(runner.model)).__name__} '
                'has no trainable parameters to average')
        low = sorted({str(p.dtype)[6:] for p in self.src_model.parameters()
                      if p.dtype in (torch.bfloat16, torch.float16)})
        if low:
            # The average is a copy in the parameters' dtype: momentum x
            # (weight - average) below its resolution would be rounded
            # away at every update.
            raise ValueError(
                f'TrainableEMAHook: the trainable parameters of '
                f'{type(unwrap(runner.model)).__name__} are {low[0]} '
                "(model.dtype / model.student.dtype), and an average kept "
                f'in {low[0]} loses every update smaller than its '
                'resolution; train them in fp32 or remove the hook from '
                'custom_hooks')
        self.ema_model = MODELS.build(
            self.ema_cfg, default_args=dict(model=self.src_model))
        runner.diffkd_ema = self

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        ema = checkpoint.get('ema_state_dict')
        if ema and 'steps' not in ema:
            # diffkd's former EMAHook: {name: average}, beside raw weights.
            ema = {f'module.{k}': v for k, v in ema.items()}
            ema['steps'] = torch.tensor(
                max(1, checkpoint.get('meta', {}).get('iter', 1)))
            self.ema_model.load_state_dict(ema, strict=self.strict_load)
            return
        if ema is None or not runner._resume:
            names = set(self.src_model.state_dict())
            # Only the averaged names: the rest of the model is not averaged
            # (mmengine would list every other weight as unexpected).
            checkpoint = dict(checkpoint, state_dict={
                k: v for k, v in checkpoint['state_dict'].items()
                if k in names})
        super().after_load_checkpoint(runner, checkpoint)

    @contextmanager
    def swapped(self, model=None):
        """The averaged weights in the trained parameters for the duration
        (exports, sample grids); yields ``model`` back."""
        self._swap_ema_parameters()
        try:
            yield model
        finally:
            self._swap_ema_parameters()
