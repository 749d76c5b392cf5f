"""Carrying an adapter trained for the teacher onto a distilled student
through the recipe's module map, the map that initialised the student:
each tensor goes to the student module(s) filled from its module (renamed
where the student renumbers); tensors of removed blocks are dropped and
listed.

- :func:`transplant_lora`: a diffusers LoRA file's state dict.
- :func:`transplant_controlnet`: a ``ControlNetModel`` state dict. A
  ControlNet copies the UNet's encoder (``conv_in``, time and added
  embeddings, down blocks, mid block) and adds one zero-convolution per
  down-block residual (``controlnet_down_blocks.N``: ``conv_in``, each
  layer, each downsampler, in order) and one for the mid block. The copied
  encoder follows the module map; each residual convolution follows the
  layer it reads, so those of removed layers are dropped and the others
  renumbered.
"""
import json
import os.path as osp
import re
from typing import Dict, List, Optional, Tuple, Union

import torch
import torch.nn as nn

from diffkd.models.compression.student import teacher_name

_LORA_KEY = re.compile(r'^(unet\.)?(.+?)\.(lora_[AB]\.weight|lora_[AB]\.bias|'
                       r'lora_magnitude_vector(\.weight)?)$')


def _student_unet(student_config: Dict):
    """The student UNet without storage (names and shapes only)."""
    from diffusers import UNet2DConditionModel
    with torch.device('meta'):
        return UNet2DConditionModel.from_config(student_config)


def teacher_unet_config(model: str) -> Dict:
    """The UNet config of a teacher pipeline or UNet folder (hub id, path
    or ``diffkd-toy/...``)."""
    from .pipeline import local_model_dir
    root = local_model_dir(model)
    for path in (osp.join(root, 'unet', 'config.json'),
                 osp.join(root, 'config.json')):
        if osp.isfile(path):
            with open(path) as f:
                return json.load(f)
    raise FileNotFoundError(f'{model}: no UNet config (looked for '
                            'unet/config.json and config.json)')


def transplant_parser(description: str, adapter: str, adapter_help: str,
                      out_help: str):
    """The command line of the transplant tools
    (``tools/transplant_lora.py``, ``tools/transplant_controlnet.py``):
    the adapter, ``--teacher``, the recipe and ``--out``; read the recipe
    with :func:`recipe_from_args`."""
    import argparse
    p = argparse.ArgumentParser(description=description)
    p.add_argument(adapter, help=adapter_help)
    p.add_argument('--teacher', required=True,
                   help='teacher pipeline or UNet folder / hub id')
    p.add_argument('--compression', required=True,
                   help='recipe type, e.g. SSD1B, BKSDMSmall')
    p.add_argument('--compression-args', default='{}',
                   help='recipe arguments as JSON, e.g. \'{"mid": "resnet"}\'')
    p.add_argument('--out', required=True, help=out_help)
    return p


def recipe_from_args(args) -> Dict:
    return dict(type=args.compression, **json.loads(args.compression_args))


def _recipe(teacher_config: Union[str, Dict], compression: Optional[dict]):
    """The recipe's result for a teacher UNet config (a dict or the path of
    its ``config.json``)."""
    from diffkd.models.compression import build_compression
    if isinstance(teacher_config, str):
        with open(teacher_config) as f:
            teacher_config = json.load(f)
    return build_compression(compression)(dict(teacher_config))


def transplant_lora(teacher_lora: Dict[str, torch.Tensor],
                    student_config: Dict, module_map: Dict[str, str],
                    ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """A teacher's LoRA state dict (diffusers' file: ``unet.``-prefixed
    peft keys) for the student the recipe made: each LoRA layer follows
    its module to the student module(s) the map fills from it; layers of
    removed blocks are dropped. Text-encoder keys pass unchanged.

    Returns the student state dict and the dropped teacher keys.
    """
    student = _student_unet(student_config)
    from_teacher: Dict[str, List[str]] = {}
    for name, module in student.named_modules():
        if name and isinstance(module, (nn.Linear, nn.Conv2d)):
            from_teacher.setdefault(teacher_name(name, module_map),
                                    []).append(name)
    out, dropped = {}, []
    for key, value in teacher_lora.items():
        if key.startswith(('text_encoder.', 'text_encoder_2.')):
            out[key] = value
            continue
        m = _LORA_KEY.match(key)
        if not m:
            raise KeyError(f'{key}: not a LoRA key of a diffusers LoRA file '
                           '(<module>.lora_A.weight / lora_B.weight)')
        prefix, module, leaf = m.group(1) or '', m.group(2), m.group(3)
        targets = from_teacher.get(module)
        if not targets:
            dropped.append(key)
            continue
        for target in targets:
            out[f'{prefix}{target}.{leaf}'] = value
    return out, dropped


def transplant_lora_file(teacher_lora_file: str, work_or_config,
                         out_file: str,
                         compression: Optional[dict] = None) -> List[str]:
    """:func:`transplant_lora` from file to file; the student's config and
    module map come from ``compression`` applied to the teacher UNet config
    given as ``work_or_config`` (a dict or a UNet ``config.json``). The
    file's adapter config (rank, alpha, targets: diffusers'
    ``lora_adapter_metadata``) is carried over, so the student's adapter
    scales as the teacher's did."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file
    comp = _recipe(work_or_config, compression)
    state, dropped = transplant_lora(load_file(teacher_lora_file),
                                     comp.student_config, comp.module_map)
    with safe_open(teacher_lora_file, framework='pt') as f:
        metadata = dict(f.metadata() or {})
    metadata['format'] = 'pt'
    save_file({k: v.contiguous() for k, v in state.items()}, out_file,
              metadata=metadata)
    return dropped


# ------------------------------------------------------------ ControlNet
# ControlNetModel.from_unet's options that are the ControlNet's own (not
# the UNet's): a transplant keeps the teacher ControlNet's values.
CONTROLNET_OWN = ('conditioning_channels',
                  'conditioning_embedding_out_channels',
                  'controlnet_conditioning_channel_order')
_RESIDUAL = re.compile(r'^down_blocks\.(\d+)\.(resnets\.(\d+)|downsamplers)\.')


def residual_sources(keys) -> List[str]:
    """The module each ``controlnet_down_blocks.N`` reads, in order, from a
    ControlNet's (or UNet's) state-dict keys: ``conv_in``, then per down
    block its layers and its downsampler."""
    stages: Dict[int, Dict[str, int]] = {}
    for key in keys:
        m = _RESIDUAL.match(key)
        if m:
            order = int(m.group(3)) if m.group(3) else float('inf')
            stages.setdefault(int(m.group(1)), {})[m.group(2)] = order
    out = ['conv_in']
    for i in sorted(stages):
        out += [f'down_blocks.{i}.{part}' for part in
                sorted(stages[i], key=stages[i].get)]
    return out


def student_controlnet(student_config: Dict, **controlnet_kwargs):
    """The student's ``ControlNetModel.from_unet`` layout, without storage.

    A student without a mid block has no ControlNet: the error names the
    recipe option that keeps a light one.
    """
    from diffusers import ControlNetModel

    from .compat import MID_HINT
    if student_config.get('mid_block_type') is None:
        raise ValueError(f'the student has no mid block '
                         f'(mid_block_type None), so no ControlNet: '
                         f'{MID_HINT}')
    unet = _student_unet(student_config)
    with torch.device('meta'):
        return ControlNetModel.from_unet(unet, load_weights_from_unet=False,
                                         **controlnet_kwargs)


def transplant_controlnet(teacher_controlnet: Dict[str, torch.Tensor],
                          student_config: Dict, module_map: Dict[str, str],
                          **controlnet_kwargs
                          ) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """A teacher ``ControlNetModel`` state dict in the layout of
    ``ControlNetModel.from_unet(student)`` (``controlnet_kwargs``: the
    teacher ControlNet's own options, :data:`CONTROLNET_OWN`).

    Returns the student state dict, which loads strictly, and the dropped
    teacher keys (removed layers and their residual convolutions).
    """
    target = student_controlnet(student_config, **controlnet_kwargs)
    t_residuals = residual_sources(teacher_controlnet)
    s_residuals = residual_sources(target.state_dict())
    out, used = {}, set()
    for key, shape in ((k, v.shape) for k, v in target.state_dict().items()):
        head, _, rest = key.partition('.')
        if head == 'controlnet_down_blocks':
            index, _, leaf = rest.partition('.')
            module = teacher_name(s_residuals[int(index)], module_map)
            if module not in t_residuals:
                raise KeyError(
                    f'student residual {key} reads {s_residuals[int(index)]}'
                    f', which maps to teacher {module}: no residual of the '
                    f'teacher ControlNet reads it ({t_residuals})')
            src = f'{head}.{t_residuals.index(module)}.{leaf}'
        elif head in ('controlnet_mid_block', 'controlnet_cond_embedding'):
            src = key
        else:
            src = teacher_name(key, module_map)
        if src not in teacher_controlnet:
            raise KeyError(f'student ControlNet tensor {key} maps to teacher '
                           f'{src}, which the teacher ControlNet does not '
                           'have: was it made for this teacher UNet?')
        if teacher_controlnet[src].shape != shape:
            raise ValueError(
                f'student ControlNet tensor {key} {tuple(shape)} maps to '
                f'teacher {src} {tuple(teacher_controlnet[src].shape)}: '
                'shapes differ')
        out[key] = teacher_controlnet[src]
        used.add(src)
    return out, sorted(set(teacher_controlnet) - used)


def transplant_controlnet_folder(teacher_controlnet: str, work_or_config,
                                 out_dir: str,
                                 compression: Optional[dict] = None
                                 ) -> List[str]:
    """:func:`transplant_controlnet` from a ControlNet folder (or hub id)
    to a diffusers ControlNet folder ``out_dir`` for the student that
    ``compression`` makes from the teacher UNet config ``work_or_config``.
    Returns the dropped teacher keys."""
    from diffusers import ControlNetModel

    from diffkd.utils.hub import resolve_model_path
    teacher = ControlNetModel.from_pretrained(
        resolve_model_path(teacher_controlnet))
    comp = _recipe(work_or_config, compression)
    own = {k: teacher.config[k] for k in CONTROLNET_OWN
           if k in teacher.config}
    state, dropped = transplant_controlnet(
        teacher.state_dict(), comp.student_config, comp.module_map, **own)
    student = ControlNetModel.from_config(
        student_controlnet(comp.student_config, **own).config)
    student.load_state_dict(state, strict=True)
    student.save_pretrained(out_dir, safe_serialization=True)
    return dropped
