from .agreement import TeacherStudentAgreement
from .clip_score import CLIPScore, clip_scores
from .fid import FID
from .held_out_loss import HeldOutLoss
from .lpips import LPIPS
from .toy_score import ToyPromptScore

__all__ = [
    'CLIPScore', 'FID', 'HeldOutLoss', 'LPIPS', 'TeacherStudentAgreement',
    'ToyPromptScore', 'clip_scores'
]
