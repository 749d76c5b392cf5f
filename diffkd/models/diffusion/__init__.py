from .components import build_component, build_unet, load_scheduler
from .data_preprocessor import DiffusionDataPreprocessor
from .loading import load_component
from .stable_diffusion import StableDiffusion
from .stable_diffusion_xl import StableDiffusionXL
from .step import DiffusionBatch

__all__ = [
    'DiffusionBatch', 'DiffusionDataPreprocessor', 'StableDiffusion',
    'StableDiffusionXL', 'build_component', 'build_unet', 'load_component',
    'load_scheduler'
]
