"""Teacher and student UNet sizes and block structure of a config
(``tools/analysis_tools/unet_stats.py``). UNets are built on the meta device
from their configs: no weights are loaded and nothing is downloaded (real
teachers' UNet configs ship with diffkd)."""
from typing import Dict

import torch
from diffusers import UNet2DConditionModel
from mmengine.config import Config

from diffkd.apis.unet_config import unet_config_for
from diffkd.models.compression import build_compression


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _depths(block):
    return [len(a.transformer_blocks) for a in getattr(block, 'attentions',
                                                       None) or []]


def describe(config: Dict) -> Dict:
    """Parameters per block of the UNet a diffusers config describes."""
    with torch.device('meta'):
        unet = UNet2DConditionModel.from_config(
            {k: v for k, v in config.items() if not k.startswith('_')})

    def stage(block):
        return dict(type=type(block).__name__, resnets=len(block.resnets),
                    transformer_depths=_depths(block),
                    params=_count(block))

    mid = unet.mid_block
    return dict(
        params=_count(unet),
        down=[stage(b) for b in unet.down_blocks],
        mid=None if mid is None else stage(mid),
        up=[stage(b) for b in unet.up_blocks],
        down_params=sum(_count(b) for b in unet.down_blocks),
        mid_params=0 if mid is None else _count(mid),
        up_params=sum(_count(b) for b in unet.up_blocks))


def stats(cfg: Config) -> Dict:
    """The UNet sizes of a config: a distillation config's teacher and
    student (and their parameter ratio), a diffusion config's UNet."""
    model = cfg.model
    if model.get('type') == 'DiffusionDistiller':
        t_src = model.teacher['model']
        t_cfg, where = unet_config_for(t_src,
                                       model.teacher.get('subfolder', 'unet'))
        comp = model.get('compression')
        s_cfg = (build_compression(comp)(t_cfg).student_config
                 if comp else t_cfg)
        out = dict(teacher=dict(source=t_src, config_from=where,
                                **describe(t_cfg)),
                   student=dict(compression=comp and comp.get('type'),
                                init=model.get('student_init', 'teacher'),
                                **describe(s_cfg)))
        out['student_to_teacher_params'] = round(
            out['student']['params'] / out['teacher']['params'], 4)
        return out
    src = model.get('unet') if isinstance(model.get('unet'), str) else \
        model['model']
    sub = None if isinstance(model.get('unet'), str) else 'unet'
    u_cfg, where = unet_config_for(src, sub)
    return dict(unet=dict(source=src, config_from=where, **describe(u_cfg)))
