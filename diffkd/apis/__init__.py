from .inference import load_export_info, load_pipeline, sample_filename

__all__ = ['load_export_info', 'load_pipeline', 'sample_filename']
