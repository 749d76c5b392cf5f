"""Evaluation: mmengine metrics (toy prompt score, CLIP score, FID,
teacher-student agreement) and the toy world's sampling helpers."""
from .metrics import (FID, LPIPS, CLIPScore, TeacherStudentAgreement,
                      ToyPromptScore)
from .toy import evaluate_toy_pipeline, latent_distance
from .weights import MissingWeightsError, metrics_dir

__all__ = [
    'CLIPScore', 'FID', 'LPIPS', 'MissingWeightsError',
    'TeacherStudentAgreement', 'ToyPromptScore', 'evaluate_toy_pipeline',
    'latent_distance', 'metrics_dir'
]
