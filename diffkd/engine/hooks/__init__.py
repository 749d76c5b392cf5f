from .checkpoint_hook import SafeCheckpointHook
from .ema_hook import TrainableEMAHook, TrainableParameters
from .export_hook import DiffusersExportHook, export_model
from .nonfinite_hook import NonFiniteLossHook
from .random_state_hook import RandomStateHook
from .runtime_info_hook import DeferredRuntimeInfoHook
from .signal_hook import SignalCheckpointHook
from .stream_hook import StreamPositionHook
from .teacher_hook import TeacherScheduleHook
from .test_outputs_hook import TestOutputsHook
from .visualization_hook import VisualizationHook, make_grid, sample_grid

__all__ = [
    'DeferredRuntimeInfoHook', 'DiffusersExportHook', 'NonFiniteLossHook',
    'RandomStateHook', 'SafeCheckpointHook', 'SignalCheckpointHook',
    'StreamPositionHook', 'TeacherScheduleHook', 'TestOutputsHook',
    'TrainableEMAHook', 'TrainableParameters', 'VisualizationHook',
    'export_model', 'make_grid', 'sample_grid'
]
