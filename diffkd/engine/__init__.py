from . import checkpoint  # noqa: F401  (safe resume loader)
from . import distributed  # noqa: F401  (DDP/FSDP wrappers, strategy)
from .hooks import *  # noqa: F401,F403
from .log_processor import DiffusionLogProcessor
from .loops import DiffusionTestLoop, DiffusionTrainLoop, RandomStateHook
from .optim import (AutocastOptimWrapper,
                    TrainableParamsOptimWrapperConstructor)

__all__ = [
    'AutocastOptimWrapper', 'DiffusionLogProcessor', 'DiffusionTestLoop',
    'DiffusionTrainLoop', 'RandomStateHook',
    'TrainableParamsOptimWrapperConstructor'
]
