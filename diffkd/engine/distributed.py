"""Data-parallel training on mmengine's engine, on GPUs and on CPUs (gloo).

* :func:`init_distributed` starts the process group before the runner does:
  mmengine 0.10's ``init_dist`` calls ``torch.cuda.set_device`` whatever the
  backend, which fails on a machine without CUDA.
* :class:`DiffusionDDP` is mmengine's DDP wrapper around the whole model
  (a distiller: teacher and student together) that leaves every frozen
  weight out of DDP: no gradient bucket (they need no gradient) and no
  broadcast at start (each rank loads them from the same files anyway).
* :class:`DiffusionFSDP` / ``DiffusionFSDPStrategy`` shard only what trains:
  frozen parts (teacher, VAE, text encoders) are FSDP ``ignored_modules``
  and stay whole on every rank, so a frozen teacher never shares a flat
  parameter with trainable weights.
"""
from contextlib import contextmanager
from typing import List
from unittest import mock

import torch
import torch.nn as nn
from mmengine.dist import init_dist, is_distributed
from mmengine.model import MMDistributedDataParallel

from diffkd.models.diffusion.frozen import frozen_modules
# diffkd's own registries: mmengine's Runner.wrap_model and FlexibleRunner
# look wrappers and strategies up in mmengine's roots, so configs name these
# 'diffkd.DiffusionDDP', 'diffkd.DiffusionFSDPStrategy' (found from there).
from diffkd.registry import FUNCTIONS, MODEL_WRAPPERS, STRATEGIES
from .checkpoint import state_layout


def init_distributed(launcher: str, backend: str = 'nccl', **kwargs) -> None:
    """Start the process group for ``launcher`` (pytorch, slurm, mpi).

    Without CUDA the backend is gloo and ``torch.cuda.set_device`` (which
    mmengine calls unconditionally) is skipped. A started group is left as
    it is; mmengine's runner then does not start another.
    """
    if launcher == 'none' or is_distributed():
        return
    if torch.cuda.is_available():
        init_dist(launcher, backend=backend, **kwargs)
        return
    with mock.patch.object(torch.cuda, 'set_device', lambda *_: None):
        init_dist(launcher, backend='gloo', **kwargs)


def frozen_state_names(model: nn.Module) -> List[str]:
    """Names of the parameters and buffers DDP should leave alone: all of
    those of frozen submodules, and any other parameter that does not
    train."""
    names = []
    for prefix, module in frozen_modules(model):
        names += [f'{prefix}.{n}' for n, _ in module.named_parameters()]
        names += [f'{prefix}.{n}' for n, _ in module.named_buffers()]
    covered = set(names)
    names += [n for n, p in model.named_parameters()
              if not p.requires_grad and n not in covered]
    return names


@MODEL_WRAPPERS.register_module()
class DiffusionDDP(MMDistributedDataParallel):
    """``MMDistributedDataParallel`` that syncs trainable weights only.

    Frozen parameters and the buffers of frozen submodules go to DDP's
    ``_ddp_params_and_buffers_to_ignore``: they are not broadcast when the
    wrapper is built and never enter a gradient bucket. On CPU (gloo) the
    ``device_ids`` mmengine passes are dropped, as DDP requires for CPU
    modules.
    """

    def __init__(self, module: nn.Module, device_ids=None,
                 broadcast_buffers: bool = False, **kwargs):
        if device_ids is not None and next(module.parameters()).device.type \
                == 'cpu':
            device_ids = None
        ignore = frozen_state_names(module)
        # DDP reads this attribute of the module it wraps.
        module._ddp_params_and_buffers_to_ignore = ignore
        super().__init__(module=module, device_ids=device_ids,
                         broadcast_buffers=broadcast_buffers, **kwargs)


def _fsdp_wrapper_class():
    from mmengine.model.wrappers import MMFullyShardedDataParallel
    return MMFullyShardedDataParallel


try:
    _MMFSDP = _fsdp_wrapper_class()
except ImportError:  # torch without FSDP
    _MMFSDP = None


def is_fsdp(model: nn.Module) -> bool:
    return _MMFSDP is not None and isinstance(model, _MMFSDP)


@contextmanager
def full_weights(model: nn.Module):
    """Whole weights in ``model`` for the duration, e.g. to export or
    sample: FSDP gathers its shards (a collective: every rank enters, one
    rank may write); other models are left as they are."""
    if is_fsdp(model):
        with _MMFSDP.summon_full_params(model, writeback=False):
            yield model
    else:
        yield model


if _MMFSDP is not None:
    from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy

    # For configs: auto_wrap_policy=dict(type='size_based_auto_wrap_policy',
    # min_num_params=...), resolved by DiffusionFSDP (mmengine's wrapper
    # looks policies up in its root FUNCTIONS only).
    if FUNCTIONS.get('size_based_auto_wrap_policy') is None:
        FUNCTIONS.register_module(module=size_based_auto_wrap_policy)

    def _resolve_policy(policy):
        """A policy named in diffkd's scope -> the function itself."""
        if isinstance(policy, str):
            return FUNCTIONS.get(policy) or policy
        if isinstance(policy, dict) and isinstance(policy.get('type'), str):
            return dict(policy,
                        type=FUNCTIONS.get(policy['type']) or policy['type'])
        return policy

    @MODEL_WRAPPERS.register_module()
    class DiffusionFSDP(_MMFSDP):
        """``MMFullyShardedDataParallel`` that shards trainable parts only.

        Frozen submodules (see :func:`frozen_modules`) are passed as
        ``ignored_modules`` unless the config names its own: they stay whole
        on every rank and out of FSDP's flat parameters. On CPU the device
        is ``cpu`` (FSDP otherwise looks for an accelerator). The names and
        whole shapes of the weights are recorded before sharding
        (``diffkd_state_layout``), for the runner to check a checkpoint
        against.
        """

        def __init__(self, module: nn.Module, device_id=None, **kwargs):
            if not torch.cuda.is_available():
                device_id = torch.device('cpu')
            if 'ignored_modules' not in kwargs:
                kwargs['ignored_modules'] = [
                    m for _, m in frozen_modules(module)]
            # FSDP keeps each weight as a contiguous view of its flat
            # parameter: a channels_last (NHWC) weight is handed over as a
            # contiguous copy (with NHWC weights, two FSDP ranks trained
            # away from one process: tests/test_reliability).
            for p in module.parameters():
                if p.requires_grad and not p.is_contiguous():
                    p.data = p.data.contiguous()
            layout = state_layout(module)
            if 'auto_wrap_policy' in kwargs:
                kwargs['auto_wrap_policy'] = _resolve_policy(
                    kwargs['auto_wrap_policy'])
            super().__init__(module=module, device_id=device_id, **kwargs)
            self.diffkd_state_layout = layout

        def val_step(self, data: dict) -> list:
            # A model's held-out loss (HeldOutLossStep) run through FSDP's
            # forward, which gathers the shards; mmengine's val_step would
            # sample (mode='predict').
            module = self.module
            if not hasattr(module, 'held_out_inputs'):
                return super().val_step(data)
            data = module.data_preprocessor(data, False)
            inputs = module.held_out_inputs(data)
            losses = self._run_forward(
                dict(inputs=inputs, data_samples=data.get('data_samples')),
                mode='loss')
            return module.held_out_outputs(losses, inputs)

    from mmengine._strategy import FSDPStrategy

    @STRATEGIES.register_module()
    class DiffusionFSDPStrategy(FSDPStrategy):
        """mmengine's ``FSDPStrategy`` with :class:`DiffusionFSDP` as the
        default wrapper and a resume that works with torch >= 2.1. The
        gradient norm over all shards is DiffusionOptimWrapper's own."""

        def __init__(self, *, model_wrapper=None, **kwargs):
            model_wrapper = dict(model_wrapper or {})
            model_wrapper.setdefault('type', 'diffkd.DiffusionFSDP')
            super().__init__(model_wrapper=model_wrapper, **kwargs)

        def load_optim_state_dict(self, state_dict: dict) -> None:
            # mmengine 0.10 passes (state_dict, model, optimizer): the
            # argument order of torch < 2.1. Resuming an FSDP run needs
            # torch's (model, optimizer, state_dict).
            from torch.distributed.fsdp import FullyShardedDataParallel
            state_dict = FullyShardedDataParallel.optim_state_dict_to_load(
                self.model, self.optim_wrapper.optimizer, state_dict)
            self.optim_wrapper.load_state_dict(state_dict)

        def build_optim_wrapper(self, optim_wrapper, model=None):
            # As FSDPStrategy does for AmpOptimWrapper: a sharded loss
            # scaler when float16 scales the loss.
            if isinstance(optim_wrapper, dict) and optim_wrapper.get(
                    'type') == 'DiffusionOptimWrapper':
                optim_wrapper.setdefault('use_fsdp', True)
            return super().build_optim_wrapper(optim_wrapper, model)
