from . import checkpoint  # noqa: F401  (safe resume loader)
from .hooks import *  # noqa: F401,F403
from .loops import DiffusionTrainLoop, RandomStateHook
from .optim import (AutocastOptimWrapper,
                    TrainableParamsOptimWrapperConstructor)

__all__ = [
    'AutocastOptimWrapper', 'DiffusionTrainLoop', 'RandomStateHook',
    'TrainableParamsOptimWrapperConstructor'
]
