from .distiller import DiffusionDistiller, DistillConfigError
from .lcm import LatentConsistencyDistiller
from .recorder import (FEATURE_PRESETS, FeaturePreset, FeatureRecorder,
                       expand_patterns, feature_pairs)

__all__ = [
    'DiffusionDistiller', 'DistillConfigError', 'FEATURE_PRESETS',
    'FeaturePreset', 'FeatureRecorder', 'LatentConsistencyDistiller',
    'expand_patterns', 'feature_pairs'
]
