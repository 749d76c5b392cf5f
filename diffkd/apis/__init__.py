from .inference import load_export_info, load_pipeline, sample_filename
from .preflight import check_config

__all__ = ['check_config', 'load_export_info', 'load_pipeline',
           'sample_filename']
