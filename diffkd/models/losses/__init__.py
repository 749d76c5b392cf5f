from .l2 import L2Loss, PseudoHuberLoss, SNRL2Loss, compute_snr

__all__ = ['L2Loss', 'PseudoHuberLoss', 'SNRL2Loss', 'compute_snr']
