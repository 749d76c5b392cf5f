from .ema_hook import EMAHook
from .export_hook import DiffusersExportHook, export_model
from .visualization_hook import VisualizationHook, make_grid

__all__ = [
    'DiffusersExportHook', 'EMAHook', 'VisualizationHook', 'export_model',
    'make_grid'
]
