"""The optimizer step, in one place.

:class:`TrainableParamsOptimWrapperConstructor` decides what trains (only
parameters with ``requires_grad``: a frozen teacher, VAE or text encoder
never reaches the optimizer); :class:`DiffusionOptimWrapper` takes the
step: mixed precision, the gradient norm and what a non-finite loss does.
Both are named by the configs (``configs/_base_/schedules/``), so
``tools/train.py`` and ``DiffusionRunner.from_cfg(cfg)`` train the same.
"""
import logging
from contextlib import contextmanager, nullcontext
from typing import Optional, Tuple

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.optim import (AmpOptimWrapper, DefaultOptimWrapperConstructor,
                            OptimWrapper)
from mmengine.runner.amp import autocast

from diffkd.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS
from .distributed import is_fsdp

DTYPES = (None, 'float32', 'bfloat16', 'float16', 'auto')
# Parameters stored in these get fp32 master copies (see
# DiffusionOptimWrapper's ``master_weights``).
LOW_PRECISION = (torch.bfloat16, torch.float16)
NONFINITE_MODES = ('stop', 'skip', 'off')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class TrainableParamsOptimWrapperConstructor(DefaultOptimWrapperConstructor):

    def __call__(self, model):
        if hasattr(model, 'module'):
            model = model.module
        if self.paramwise_cfg:
            return super().__call__(model)
        from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = self.optimizer_cfg.copy()
        params = [p for p in model.parameters() if p.requires_grad]
        if not params:
            raise ValueError('the model has no trainable parameters')
        optimizer_cfg['params'] = params
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(
            optim_wrapper_cfg, default_args=dict(optimizer=optimizer))


def mixed_precision(dtype: Optional[str],
                    device: str) -> Tuple[Optional[torch.dtype], bool]:
    """(autocast dtype or None, loss scaling) that ``dtype`` means on a
    ``device`` type ('cpu', 'cuda'); see :class:`DiffusionOptimWrapper`."""
    if dtype not in DTYPES:
        raise ValueError(f'optim_wrapper.dtype must be one of {DTYPES}, got '
                         f'{dtype!r}')
    if dtype in (None, 'float32'):
        return None, False
    cuda = device == 'cuda'
    if dtype == 'auto':
        dtype = 'bfloat16' if not cuda or torch.cuda.is_bf16_supported() \
            else 'float16'
    if dtype == 'float16' and not cuda:
        print_log(
            f'no CUDA device: float16 mixed precision runs as bfloat16 '
            f'autocast on the {device} (float16 needs a GPU and its loss '
            'scaling)', logger='current', level=logging.WARNING)
        dtype = 'bfloat16'
    return getattr(torch, dtype), dtype == 'float16'


@OPTIM_WRAPPERS.register_module()
class DiffusionOptimWrapper(AmpOptimWrapper):
    """The optimizer wrapper of every diffkd config: mmengine's
    ``OptimWrapper`` (and, for float16 on a GPU, its ``AmpOptimWrapper``
    loss scaling) owning the whole step.

    Args:
        dtype: mixed precision. ``None`` (or ``'float32'``): none.
            ``'bfloat16'``: autocast, no loss scaling, on a GPU or a CPU.
            ``'float16'``: on a GPU autocast with ``AmpOptimWrapper``'s loss
            scaling; without CUDA bfloat16 autocast (a warning says so:
            mmengine's ``AmpOptimWrapper`` refuses CPUs, and CPUs have no
            fast float16). ``'auto'`` (``tools/train.py --amp``): bfloat16
            where the device has it, else float16.
        loss_scale: ``AmpOptimWrapper``'s (float16 on a GPU only).
        nonfinite: what a NaN/inf loss does. ``'stop'``: the step is not
            applied and the run stops (``NonFiniteLossHook`` raises at its
            next check); ``'skip'``: the step is not applied and training
            goes on; ``'off'``: no check.
        max_skipped: with ``'skip'``, stop once more steps than this were
            skipped (None: no limit).
        master_weights: for trainable parameters stored in bf16/fp16 (a
            student built with ``dtype='bfloat16'``): the optimizer updates
            fp32 copies of them, which are copied back (rounded) after each
            step, so updates below bf16's resolution still accumulate.
            Gradients are moved into the fp32 copies after each backward
            (accumulated in fp32). Checkpoints hold the fp32 copies under
            the optimizer's ``master_weights`` (the model's weights are
            their rounding); a resume restores them exactly. ``False``:
            the optimizer updates the low-precision parameters directly.
        use_fsdp: ``AmpOptimWrapper``'s (a sharded loss scaler; set by
            ``DiffusionFSDPStrategy``). Under FSDP the gradient norm is
            FSDP's, over all shards.
        **kwargs: ``OptimWrapper``'s (``optimizer``, ``clip_grad``,
            ``accumulative_counts``).

    The non-finite test runs on the device: with an optimizer that takes
    ``found_inf`` (fused Adam/AdamW/SGD) the step is skipped there, with no
    host sync; otherwise (or with loss scaling) the flag is read on the
    host before the step. Across processes the flag is all-reduced, so
    every rank skips the same steps.

    Hooks read, after each iteration, these attributes of the last
    ``update_params`` (one per iteration in mmengine's ``train_step``):

    * ``grad_norm``: the clipped step's gradient norm, a tensor left on the
      device (mmengine's wrapper logs it with ``float()``, a host sync per
      step); None when no step clipped. ``DeferredRuntimeInfoHook`` logs
      it with the other scalars, once per log interval.
    * ``nonfinite_local`` / ``nonfinite_any``: device tensors, whether this
      process's / any process's loss was non-finite (None with ``'off'``).
    * ``nonfinite_synced``: the step read the flag on the host.

    and ``nonfinite``, ``max_skipped``, ``cast_dtype`` (the autocast dtype
    or None) and ``loss_scaler`` (None without loss scaling).
    """
    #: key of the fp32 master weights in :meth:`state_dict`
    MASTER_KEY = 'master_weights'

    def __init__(self,
                 optimizer: torch.optim.Optimizer,
                 dtype: Optional[str] = None,
                 loss_scale='dynamic',
                 nonfinite: str = 'stop',
                 max_skipped: Optional[int] = None,
                 use_fsdp: bool = False,
                 master_weights: bool = True,
                 **kwargs):
        if nonfinite not in NONFINITE_MODES:
            raise ValueError(f'optim_wrapper.nonfinite must be one of '
                             f'{NONFINITE_MODES}, got {nonfinite!r}')
        device = next(p.device.type for g in optimizer.param_groups
                      for p in g['params'])
        cast_dtype, scaled = mixed_precision(dtype, device)
        if scaled:
            super().__init__(loss_scale=loss_scale, dtype=cast_dtype,
                             use_fsdp=use_fsdp, optimizer=optimizer,
                             **kwargs)
        else:
            # AmpOptimWrapper's own set-up refuses a machine without a GPU
            # and builds a loss scaler, which bfloat16 does not need.
            OptimWrapper.__init__(self, optimizer=optimizer, **kwargs)
            self.loss_scaler = None
            self._scale_update_param = None
            self.cast_dtype = cast_dtype
        self.device_type = device
        self.nonfinite = nonfinite
        self.max_skipped = max_skipped
        # GradScaler decides on found_inf itself: the flag is read on the
        # host then.
        self.nonfinite_on_device = bool(
            getattr(optimizer, '_step_supports_amp_scaling', False)
            and self.loss_scaler is None)
        self.grad_norm: Optional[torch.Tensor] = None
        self.nonfinite_local: Optional[torch.Tensor] = None
        self.nonfinite_any: Optional[torch.Tensor] = None
        self.nonfinite_synced = False
        self._flag: Optional[torch.Tensor] = None  # since the last step
        self._model = None
        # Every parameter the optimizer was given, in its state_dict's
        # order; the low-precision ones (by that index) get masters.
        self._params = [p for g in optimizer.param_groups
                        for p in g['params']]
        self._low = [i for i, p in enumerate(self._params)
                     if p.dtype in LOW_PRECISION and p.requires_grad] \
            if master_weights else []
        if self._low and use_fsdp:
            raise ValueError(
                'optim_wrapper.master_weights: under FSDP keep the student '
                'in fp32 and set the strategy\'s mixed precision instead of '
                "model.student.dtype (or set master_weights=False)")
        # index -> fp32 master; made at the first backward (or resume),
        # after mmengine has loaded any load_from weights into the model.
        self._masters: Optional[dict] = None
        precision = ('fp32' if cast_dtype is None else
                     f'{str(cast_dtype)[6:]} autocast' +
                     (' with loss scaling' if scaled else ''))
        if self._low:
            precision += (f', fp32 master weights for {len(self._low)} '
                          f'low-precision parameters')
        print_log(f'{type(self).__name__}: {precision} on {device}, '
                  f'non-finite losses: {nonfinite}', logger='current')

    # --------------------------------------------------------------- step
    def update_params(self, loss: torch.Tensor, step_kwargs=None,
                      zero_kwargs=None) -> None:
        self.grad_norm = None
        self.nonfinite_synced = False
        if self.nonfinite != 'off':
            local = ~torch.isfinite(loss.detach()).all()
            flag = local.float().reshape(1)
            if get_dist_info()[1] > 1:
                torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
            self.nonfinite_local, self.nonfinite_any = local, flag[0]
            self._flag = flag if self._flag is None else torch.maximum(
                self._flag, flag)
        super().update_params(loss, step_kwargs, zero_kwargs)

    def backward(self, loss: torch.Tensor, **kwargs) -> None:
        if self.loss_scaler is None:
            OptimWrapper.backward(self, loss, **kwargs)
        else:
            super().backward(loss, **kwargs)
        if self._low:
            self._grads_to_masters()

    def step(self, **kwargs) -> None:
        self._step(**kwargs)
        if self._masters:
            # Skipped steps leave the masters as they were: copying back
            # is then a no-op.
            with torch.no_grad():
                for i, master in self._masters.items():
                    self._params[i].copy_(master)

    def _step(self, **kwargs) -> None:
        flag, self._flag = self._flag, None
        scaler = self.loss_scaler
        unscaled = False
        if self.clip_grad_kwargs:
            if scaler is not None:
                scaler.unscale_(self.optimizer)
                unscaled = True
            self._clip_grad()
        if flag is not None and not self.nonfinite_on_device:
            self.nonfinite_synced = True
            if flag.item():
                if scaler is not None:  # an overflow: the scale shrinks
                    if not unscaled:
                        scaler.unscale_(self.optimizer)
                    scaler.update(self._scale_update_param)
                return  # update_params goes on to zero the gradients
            flag = None
        if scaler is not None:
            scaler.step(self.optimizer, **kwargs)
            scaler.update(self._scale_update_param)
        elif flag is not None:
            # Fused optimizers skip the update on the device.
            self.optimizer.found_inf = flag.reshape(())
            try:
                self.optimizer.step(**kwargs)
            finally:
                self.optimizer.found_inf = None
        else:
            self.optimizer.step(**kwargs)

    def _clip_grad(self) -> None:
        # mmengine's, keeping the norm on the device (it logs float(norm)).
        params = [p for g in self.optimizer.param_groups for p in g['params']
                  if p.requires_grad and p.grad is not None]
        if not params:
            return
        if self.grad_name == 'grad_norm' and is_fsdp(self._model):
            # The norm over all shards (clip_grad_norm_ on this rank's
            # shard alone would clip every rank differently).
            kwargs = self.clip_grad_kwargs
            self.grad_norm = self._model.clip_grad_norm_(
                kwargs['max_norm'], kwargs.get('norm_type', 2.0))
            return
        norm = self.clip_func(params, **self.clip_grad_kwargs)
        if norm is not None:  # clip_grad_value_ returns None
            self.grad_norm = norm

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        self._model = model  # FSDP's gradient norm needs it
        cast = nullcontext() if self.cast_dtype is None else autocast(
            device_type=self.device_type, dtype=self.cast_dtype)
        with OptimWrapper.optim_context(self, model), cast:
            yield

    # --------------------------------------------------- master weights
    def _make_masters(self, saved: Optional[dict] = None) -> None:
        """fp32 copies of the low-precision parameters (from ``saved``
        where it has them) take their place in the optimizer."""
        self._masters = {}
        slots = {id(p): (g, j) for g in self.optimizer.param_groups
                 for j, p in enumerate(g['params'])}
        for i in self._low:
            param = self._params[i]
            source = saved[i] if saved and i in saved else param.detach()
            master = torch.nn.Parameter(
                source.to(param.device, torch.float32, copy=True))
            group, j = slots[id(param)]
            group['params'][j] = master
            state = self.optimizer.state.pop(param, None)
            if state is not None:
                self.optimizer.state[master] = state
            self._masters[i] = master

    def _grads_to_masters(self) -> None:
        if self._masters is None:
            self._make_masters()
        for i, master in self._masters.items():
            param = self._params[i]
            if param.grad is None:
                continue
            grad = param.grad.float()
            master.grad = grad if master.grad is None else \
                master.grad.add_(grad)
            param.grad = None  # the low-precision gradient is not kept

    def master_weight(self, param: torch.nn.Parameter) -> torch.Tensor:
        """The fp32 weight the optimizer updates for ``param`` (``param``
        itself when it has no master)."""
        for i, p in enumerate(self._params):
            if p is param:
                if self._masters is None and i in self._low:
                    self._make_masters()
                return (self._masters or {}).get(i, param)
        raise KeyError('the parameter is not in this optimizer')

    # ------------------------------------------------------------- state
    def state_dict(self) -> dict:
        if self.loss_scaler is None:
            state = OptimWrapper.state_dict(self)
        else:
            state = super().state_dict()
        if self._low:
            if self._masters is None:
                self._make_masters()
            state[self.MASTER_KEY] = {
                i: m.detach().clone() for i, m in self._masters.items()}
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop(self.MASTER_KEY, None) or {}
        for i, master in saved.items():
            if not (isinstance(i, int) and 0 <= i < len(self._params)) or \
                    master.shape != self._params[i].shape:
                raise ValueError(
                    f'optimizer state: master weight {i!r} '
                    f'{tuple(master.shape)} matches no parameter of this '
                    f'optimizer ({len(self._params)} parameters)')
        # The masters must be in the optimizer before its state is loaded:
        # torch casts the loaded moments to each parameter's dtype.
        if self._low:
            if self._masters is None:
                self._make_masters(saved)
            else:
                with torch.no_grad():
                    for i, master in self._masters.items():
                        if i in saved:
                            master.copy_(saved[i])
        with torch.no_grad():
            # The masters are the truth: a low-precision parameter takes
            # their rounding, an fp32 one (a bf16 run resumed in fp32)
            # takes them as they are.
            for i, master in saved.items():
                self._params[i].copy_(master)
        if self.loss_scaler is None:
            # e.g. a float16 GPU run resumed on a CPU (bfloat16)
            state_dict.pop('loss_scaler', None)
            OptimWrapper.load_state_dict(self, state_dict)
        else:
            super().load_state_dict(state_dict)


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(DiffusionOptimWrapper):
    """The name configs dumped by earlier diffkd versions give to bfloat16
    autocast: :class:`DiffusionOptimWrapper` with ``dtype='bfloat16'``."""

    def __init__(self, dtype: str = 'bfloat16', **kwargs):
        super().__init__(dtype=dtype, **kwargs)
