"""Optimizer construction: only parameters that train reach the optimizer
(a frozen teacher, VAE or text encoder never does)."""
from mmengine.optim import DefaultOptimWrapperConstructor

from diffkd.registry import OPTIM_WRAPPER_CONSTRUCTORS


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
