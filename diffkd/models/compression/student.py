"""Building and initialising students from a compression."""
from typing import Dict, Union

import torch
import torch.nn as nn
from diffusers import UNet2DConditionModel
from mmengine.registry import DefaultScope

from diffkd.registry import COMPRESSIONS
from .block_removal import BlockRemoval


def build_compression(cfg: Union[dict, BlockRemoval]) -> BlockRemoval:
    if callable(cfg) and not isinstance(cfg, dict):
        return cfg
    with DefaultScope.overwrite_default_scope('diffkd'):
        return COMPRESSIONS.build(cfg)


def count_parameters(config: Dict) -> int:
    """UNet parameter count from a config alone (meta device, no weights)."""
    with torch.device('meta'):
        unet = UNet2DConditionModel.from_config(config)
    return sum(p.numel() for p in unet.parameters())


def teacher_name(student_name: str, module_map: Dict[str, str]) -> str:
    """Teacher tensor/module name for a student one: the longest mapped
    module prefix decides."""
    parts = student_name.split('.')
    for cut in range(len(parts), -1, -1):
        prefix = '.'.join(parts[:cut])
        if prefix in module_map:
            rest = '.'.join(parts[cut:])
            base = module_map[prefix]
            return f'{base}.{rest}' if base and rest else (base or rest)
    raise KeyError(student_name)


@torch.no_grad()
def init_from_teacher(student: nn.Module, teacher: nn.Module,
                      module_map: Dict[str, str]) -> Dict[str, str]:
    """Copy every student tensor from the teacher tensor the map assigns.

    Returns the student->teacher tensor names used. A tensor with no
    teacher counterpart or another shape is an error naming both.
    """
    t_state = teacher.state_dict()
    used = {}
    for name, tensor in student.state_dict().items():
        src = teacher_name(name, module_map)
        if src not in t_state:
            raise KeyError(f'student tensor {name} maps to teacher {src}, '
                           'which the teacher does not have')
        if t_state[src].shape != tensor.shape:
            raise ValueError(
                f'student tensor {name} {tuple(tensor.shape)} maps to '
                f'teacher {src} {tuple(t_state[src].shape)}: shapes differ')
        tensor.copy_(t_state[src])
        used[name] = src
    return used
