"""Diffusion losses. Every loss is ``loss(pred, target, snr=None,
prediction_type='epsilon') -> scalar`` so the task term and every KD term
can use any of them."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from diffkd.registry import MODELS


def compute_snr(alphas_cumprod: torch.Tensor,
                timesteps: torch.Tensor) -> torch.Tensor:
    """Signal-to-noise ratio alpha_t^2 / sigma_t^2 for each timestep."""
    alphas_cumprod = alphas_cumprod.to(timesteps.device)[timesteps].float()
    return alphas_cumprod / (1.0 - alphas_cumprod)


def _per_sample_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    err = F.mse_loss(pred.float(), target.float(), reduction='none')
    return err.reshape(err.shape[0], -1).mean(dim=1)


@MODELS.register_module()
class L2Loss(nn.Module):
    """Mean squared error; ``snr`` is accepted and ignored."""

    def __init__(self, loss_weight: float = 1.0):
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                snr: Optional[torch.Tensor] = None,
                prediction_type: str = 'epsilon') -> torch.Tensor:
        return self.loss_weight * _per_sample_mse(pred, target).mean()


@MODELS.register_module()
class SNRL2Loss(nn.Module):
    """Min-SNR-gamma weighted MSE (Hang et al., 2023).

    Each sample's error is weighted by ``min(snr, gamma) / snr`` for epsilon
    prediction and ``min(snr, gamma) / (snr + 1)`` for v-prediction.
    """
    needs_snr = True

    def __init__(self, snr_gamma: float = 5.0, loss_weight: float = 1.0):
        super().__init__()
        self.snr_gamma = snr_gamma
        self.loss_weight = loss_weight

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                snr: Optional[torch.Tensor] = None,
                prediction_type: str = 'epsilon') -> torch.Tensor:
        if snr is None:
            raise ValueError('SNRL2Loss needs the per-sample snr')
        clipped = torch.clamp(snr, max=self.snr_gamma)
        if prediction_type == 'v_prediction':
            weight = clipped / (snr + 1)
        elif prediction_type == 'epsilon':
            # snr -> 0 (zero-terminal-SNR schedules): the weight tends to 1.
            weight = torch.where(snr > 0, clipped / snr.clamp_min(1e-12),
                                 torch.ones_like(snr))
        else:
            raise ValueError(f'SNRL2Loss does not support prediction_type '
                             f'{prediction_type!r}')
        loss = _per_sample_mse(pred, target) * weight.to(pred.device)
        return self.loss_weight * loss.mean()


@MODELS.register_module()
class PseudoHuberLoss(nn.Module):
    """Pseudo-Huber loss ``mean(sqrt((pred - target)^2 + c^2) - c)``: L2 for
    errors much smaller than ``c``, L1 beyond (the loss of latent
    consistency distillation; Song & Dhariwal, 2023). ``snr`` is accepted
    and ignored."""

    def __init__(self, c: float = 0.001, loss_weight: float = 1.0):
        super().__init__()
        if c <= 0:
            raise ValueError(f'PseudoHuberLoss needs c > 0, got c={c}')
        self.c = c
        self.loss_weight = loss_weight

    def forward(self,
                pred: torch.Tensor,
                target: torch.Tensor,
                snr: Optional[torch.Tensor] = None,
                prediction_type: str = 'epsilon') -> torch.Tensor:
        err = (pred.float() - target.float()).pow(2)
        return self.loss_weight * (torch.sqrt(err + self.c**2) -
                                   self.c).mean()
