from . import checkpoint  # noqa: F401  (safe resume loader)
from . import distributed  # noqa: F401  (DDP/FSDP wrappers, strategy)
from .hooks import *  # noqa: F401,F403
from .loops import DiffusionTestLoop, DiffusionTrainLoop, RandomStateHook
from .optim import (AutocastOptimWrapper,
                    TrainableParamsOptimWrapperConstructor)

__all__ = [
    'AutocastOptimWrapper', 'DiffusionTestLoop', 'DiffusionTrainLoop', 'RandomStateHook',
    'TrainableParamsOptimWrapperConstructor'
]
