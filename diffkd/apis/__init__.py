from .inference import load_export_info, load_pipeline, sample_filename
from .preflight import check_config
from .unet_config import unet_config_for

__all__ = [
    'check_config', 'load_export_info', 'load_pipeline', 'sample_filename',
    'unet_config_for'
]
