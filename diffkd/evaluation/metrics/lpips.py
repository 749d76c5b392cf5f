"""LPIPS (Zhang et al. 2018, v0.1, AlexNet) in plain torch.

Loads torchvision's AlexNet checkpoint and the LPIPS linear heads from
local files, so it runs without torchvision or the lpips package.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..weights import find_weights_file

BACKBONE_FILE = 'alexnet-owt-7be5be79.pth'
BACKBONE_URL = 'https://download.pytorch.org/models/' + BACKBONE_FILE
HEADS_FILE = 'alex.pth'
HEADS_URL = ('https://github.com/richzhang/PerceptualSimilarity/raw/master/'
             'lpips/weights/v0.1/alex.pth')
CHANNELS = (64, 192, 384, 256, 256)
# torchvision's ``features`` indices of the five convs LPIPS taps
_CONV_INDEX = (0, 3, 6, 8, 10)


# Not torchmetrics' LPIPS: needs torchvision, whose 0.28.0 (for torch 2.13) fails to import: "operator torchvision::nms does not exist".
class LPIPS(nn.Module):
    """Perceptual distance between two image batches in [-1, 1]."""

    def __init__(self):
        super().__init__()
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 64, 11, 4, 2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.Conv2d(256, 256, 3, padding=1)])
        self.heads = nn.ModuleList(
            [nn.Conv2d(c, 1, 1, bias=False) for c in CHANNELS])
        self.register_buffer(
            'shift', torch.tensor([-.030, -.088, -.188]).view(1, 3, 1, 1))
        self.register_buffer(
            'scale', torch.tensor([.458, .448, .450]).view(1, 3, 1, 1))
        self.requires_grad_(False).eval()

    @classmethod
    def from_files(cls, backbone: Optional[str] = None,
                   heads: Optional[str] = None) -> 'LPIPS':
        """Weights from ``$DIFFKD_HOME/metrics`` unless paths are given."""
        backbone = find_weights_file('TeacherStudentAgreement',
                                     'lpips_backbone', backbone,
                                     BACKBONE_FILE, BACKBONE_URL)
        heads = find_weights_file('TeacherStudentAgreement', 'lpips_heads',
                                  heads, HEADS_FILE, HEADS_URL)
        model = cls()
        alex = torch.load(backbone, map_location='cpu', weights_only=True)
        lin = torch.load(heads, map_location='cpu', weights_only=True)
        state = {}
        for i, idx in enumerate(_CONV_INDEX):
            state[f'convs.{i}.weight'] = alex[f'features.{idx}.weight']
            state[f'convs.{i}.bias'] = alex[f'features.{idx}.bias']
            state[f'heads.{i}.weight'] = lin[f'lin{i}.model.1.weight']
        model.load_state_dict(state, strict=False)
        return model

    def _taps(self, x):
        x = (x - self.shift) / self.scale
        taps = []
        for i, conv in enumerate(self.convs):
            if i in (1, 2):  # AlexNet max-pools before conv2 and conv3
                x = F.max_pool2d(x, 3, 2)
            x = F.relu(conv(x))
            taps.append(x / (x.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return taps

    @torch.no_grad()
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Per-pair distance, shape ``(N,)``."""
        total = 0
        for head, fa, fb in zip(self.heads, self._taps(a), self._taps(b)):
            total = total + head((fa - fb)**2).mean((1, 2, 3))
        return total
