from .data_preprocessor import DiffusionDataPreprocessor
from .loading import load_component
from .stable_diffusion import (DiffusionBatch, StableDiffusion, build_unet,
                               load_scheduler)
from .stable_diffusion_xl import StableDiffusionXL

__all__ = [
    'DiffusionBatch', 'DiffusionDataPreprocessor', 'StableDiffusion',
    'StableDiffusionXL', 'build_unet', 'load_component', 'load_scheduler'
]
