"""Moves a collated batch to the model's device; stacks per-sample tensors
when the dataloader used mmengine's ``pseudo_collate``."""
from typing import Dict

import torch
from mmengine.model import BaseDataPreprocessor

from diffkd.registry import MODELS


@MODELS.register_module()
class DiffusionDataPreprocessor(BaseDataPreprocessor):

    def forward(self, data: Dict, training: bool = False) -> Dict:
        inputs = dict(data['inputs'])
        for key, value in inputs.items():
            if isinstance(value, (list, tuple)) and value and all(
                    isinstance(v, torch.Tensor) for v in value):
                inputs[key] = torch.stack(list(value))
        return dict(
            inputs=self.cast_data(inputs),
            data_samples=data.get('data_samples'))
