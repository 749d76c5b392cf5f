from .inference import (export_pipeline, load_export_info, load_pipeline,
                        sample_filename, sample_images)
from .preflight import check_config
from .unet_config import unet_config_for

__all__ = [
    'check_config', 'export_pipeline', 'load_export_info', 'load_pipeline',
    'sample_filename', 'sample_images', 'unet_config_for'
]
