"""Optimizer construction: only parameters that train reach the optimizer
(a frozen teacher, VAE or text encoder never does); mixed precision on
any device."""
from contextlib import contextmanager

import torch
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper

from diffkd.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS


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
        wrapper = OPTIM_WRAPPERS.build(
            optim_wrapper_cfg, default_args=dict(optimizer=optimizer))
        if getattr(wrapper, 'clip_func', None) is not None and \
                wrapper.clip_grad_kwargs.get('type', 'norm') == 'norm':
            wrapper.clip_func = DeferredGradNorm(wrapper.clip_func)
        return wrapper


class DeferredGradNorm:
    """``clip_grad_norm_`` that keeps the norm on the device.

    mmengine's OptimWrapper logs the norm with ``float()`` every step (a
    host sync); returning None skips that, and
    :class:`~diffkd.engine.hooks.DeferredRuntimeInfoHook` logs ``last``
    with the other scalars.
    """

    def __init__(self, clip_func):
        self.clip_func = clip_func
        self.last = None

    def __call__(self, *args, **kwargs):
        self.last = self.clip_func(*args, **kwargs)
        return None


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """bf16 autocast without loss scaling, on any device.

    mmengine's AmpOptimWrapper refuses CPUs; bf16 needs no loss scaler, so
    autocast around the forward is all mixed precision takes there.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs):
        super().__init__(**kwargs)
        if dtype not in ('bfloat16', 'float16'):
            raise ValueError(f'dtype must be bfloat16 or float16, got {dtype}')
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model):
        device = next(model.parameters()).device.type
        with super().optim_context(model), torch.autocast(
                device_type=device, dtype=self.cast_dtype):
            yield
