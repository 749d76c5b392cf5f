from .inference import load_export_info, load_pipeline

__all__ = ['load_export_info', 'load_pipeline']
