from .distiller import DiffusionDistiller, DistillConfigError
from .recorder import FEATURE_PRESETS, FeatureRecorder, expand_patterns

__all__ = [
    'DiffusionDistiller', 'DistillConfigError', 'FEATURE_PRESETS',
    'FeatureRecorder', 'expand_patterns'
]
