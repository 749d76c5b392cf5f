"""Distilled students in the formats users run: complete diffusers
pipeline folders with a model card, single-file (LDM/SGM) checkpoints,
kohya-format LoRA files, and adapter compatibility reports.

Shared by the end-of-training export (``DiffusersExportHook``),
``tools/export_pipeline.py``, ``tools/push_to_hub.py``,
``tools/export_single_file.py`` and ``tools/analysis_tools/compat.py``.
"""
from .card import build_model_card, find_metrics, run_facts, write_model_card
from .folder import (finish_export, export_pipeline_folder,
                     upload_plan)
from .loading import find_export, load_export_info, load_pipeline
from .pipeline import (complete_pipeline, is_pipeline_folder,
                       local_model_dir, read_export_info)

__all__ = [
    'build_model_card', 'complete_pipeline', 'export_pipeline_folder',
    'find_export', 'find_metrics', 'finish_export', 'is_pipeline_folder',
    'load_export_info', 'load_pipeline', 'local_model_dir',
    'read_export_info', 'run_facts', 'upload_plan', 'write_model_card'
]
