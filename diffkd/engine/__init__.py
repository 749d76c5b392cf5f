from . import distributed  # noqa: F401  (DDP/FSDP wrappers, strategy)
from .hooks import *  # noqa: F401,F403
from .log_processor import DiffusionLogProcessor
from .loops import DiffusionTestLoop
from . import optimizers  # noqa: F401  (AdamW8bit, imported lazily)
from .optim import (AutocastOptimWrapper, DiffusionOptimWrapper,
                    TrainableParamsOptimWrapperConstructor)
from .runner import (CheckpointMismatchError, DiffusionFlexibleRunner,
                     DiffusionRunner, NoCheckpointError, read_checkpoint)

__all__ = [
    'AutocastOptimWrapper', 'CheckpointMismatchError',
    'DiffusionFlexibleRunner', 'DiffusionLogProcessor',
    'DiffusionOptimWrapper', 'DiffusionRunner', 'DiffusionTestLoop',
    'NoCheckpointError', 'RandomStateHook',
    'TrainableParamsOptimWrapperConstructor', 'read_checkpoint'
]
