from diffkd.export.loading import load_export_info, load_pipeline
from .inference import sample_filename, sample_images
from .preflight import check_config
from .unet_config import unet_config_for

__all__ = [
    'check_config', 'load_export_info', 'load_pipeline',
    'sample_filename', 'sample_images', 'unet_config_for'
]
