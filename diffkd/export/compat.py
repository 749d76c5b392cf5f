"""Which adapters work on a student UNet (carrying a teacher's LoRA or
ControlNet onto a student is in :mod:`.transplant`).

:func:`compat_report` tries each adapter for real on the UNet (tiny
inputs, CPU): ``ControlNetModel.from_unet`` plus a forward pass with its
residuals, IP-Adapter attention-processor loading plus a forward pass, a
LoRA save/load round trip, and the single-file layout.
"""
import json
import os.path as osp
from typing import Dict, List

import torch
import torch.nn as nn

# Kept importable from here (they lived in this module).
from .transplant import transplant_lora, transplant_lora_file  # noqa: F401

MID_HINT = ("the recipe removes the mid block, and ControlNetModel needs "
            "one: distil with the recipe's light mid block, e.g. "
            "compression=dict(type='BKSDMSmall', mid='resnet') (one resnet, "
            "as SSD-1B and Vega keep)")


def _inputs(unet, batch: int = 1):
    """Small inputs that every stage of ``unet`` can halve."""
    cfg = unet.config
    size = 2 ** len(cfg.down_block_types)
    cross = cfg.cross_attention_dim
    cross = cross[0] if isinstance(cross, (list, tuple)) else cross
    kw = dict(sample=torch.randn(batch, cfg.in_channels, size, size),
              timestep=torch.tensor([10]),
              encoder_hidden_states=torch.randn(batch, 4, cross))
    if cfg.addition_embed_type == 'text_time':
        n_time = 6
        text = cfg.projection_class_embeddings_input_dim - \
            n_time * cfg.addition_time_embed_dim
        kw['added_cond_kwargs'] = dict(text_embeds=torch.randn(batch, text),
                                       time_ids=torch.randn(batch, n_time))
    return kw


def check_controlnet(unet) -> Dict:
    from diffusers import ControlNetModel
    try:
        cn = ControlNetModel.from_unet(unet)
    except Exception as err:
        detail = f'{type(err).__name__}: {err}'
        if unet.config.mid_block_type is None:
            detail += f'. {MID_HINT}'
        return dict(adapter='controlnet', ok=False, detail=detail)
    kw = _inputs(unet)
    size = kw['sample'].shape[-1]
    with torch.no_grad():
        down, mid = cn(controlnet_cond=torch.randn(1, 3, size * 8, size * 8),
                       return_dict=False, **kw)
        out = unet(down_block_additional_residuals=down,
                   mid_block_additional_residual=mid, **kw).sample
    return dict(adapter='controlnet', ok=bool(torch.isfinite(out).all()),
                detail=f'ControlNetModel.from_unet: {len(down)} down '
                f'residuals + mid ({cn.config.mid_block_type}) accepted')


def ip_adapter_state_dict(unet, clip_dim: int = 16, tokens: int = 4):
    """An IP-Adapter (random weights) shaped for ``unet``'s own
    cross-attention layers, in the layout diffusers' loader reads."""
    cross = unet.config.cross_attention_dim
    cross = cross[0] if isinstance(cross, (list, tuple)) else cross
    image_proj = {'proj.weight': torch.randn(cross * tokens, clip_dim),
                  'proj.bias': torch.zeros(cross * tokens),
                  'norm.weight': torch.ones(cross),
                  'norm.bias': torch.zeros(cross)}
    ip = {}
    for i, (name, _) in enumerate(unet.attn_processors.items()):
        if name.endswith('attn2.processor'):
            attn = unet.get_submodule(name[:-len('.processor')])
            hidden = attn.to_out[0].out_features
            ip[f'{i}.to_k_ip.weight'] = torch.randn(hidden, cross) * 0.02
            ip[f'{i}.to_v_ip.weight'] = torch.randn(hidden, cross) * 0.02
    return {'image_proj': image_proj, 'ip_adapter': ip}


def check_ip_adapter(unet) -> Dict:
    import copy
    unet = copy.deepcopy(unet)
    sd = ip_adapter_state_dict(unet)
    n_layers = len(sd['ip_adapter']) // 2
    if not n_layers:
        return dict(adapter='ip_adapter', ok=False,
                    detail='the UNet has no cross-attention layer')
    try:
        unet._load_ip_adapter_weights([sd])
        kw = _inputs(unet)
        kw.setdefault('added_cond_kwargs', {})['image_embeds'] = [
            torch.randn(1, 1, 16)]
        with torch.no_grad():
            out = unet(**kw).sample
    except Exception as err:
        return dict(adapter='ip_adapter', ok=False,
                    detail=f'{type(err).__name__}: {err}')
    return dict(adapter='ip_adapter', ok=bool(torch.isfinite(out).all()),
                detail=f'IP-Adapter processors loaded on {n_layers} '
                'cross-attention layers')


def check_lora(unet) -> Dict:
    import copy

    from peft.utils import get_peft_model_state_dict

    from diffkd.models.lora import add_lora
    trained = copy.deepcopy(unet)
    try:
        add_lora(trained, rank=2)
    except ValueError as err:
        return dict(adapter='lora', ok=False, detail=str(err))
    sd = get_peft_model_state_dict(trained)
    fresh = copy.deepcopy(unet)
    fresh.load_lora_adapter({f'unet.{k}': v for k, v in sd.items()},
                            prefix='unet', adapter_name='check')
    loaded = get_peft_model_state_dict(fresh, adapter_name='check')
    missing = sorted(set(sd) - set(loaded))
    return dict(adapter='lora', ok=not missing,
                detail=f'{len(sd) // 2} LoRA layers saved and loaded back'
                if not missing else f'not loaded: {", ".join(missing[:5])}')


def check_single_file(unet) -> Dict:
    from diffusers.loaders.single_file_utils import \
        convert_ldm_unet_checkpoint

    from .single_file import UNET_PREFIX, SingleFileError, unet_to_ldm
    state = unet.state_dict()
    cfg = dict(unet.config)
    try:
        ldm = unet_to_ldm(state, cfg)
    except SingleFileError as err:
        return dict(adapter='single_file', ok=False, detail=str(err))
    back = convert_ldm_unet_checkpoint(
        {UNET_PREFIX + k: v for k, v in ldm.items()}, cfg)
    bad = [k for k in state if k not in back or
           not torch.equal(state[k], back[k])]
    mid = 'no middle_block (ComfyUI: transformer_depth_middle -2)' \
        if cfg.get('mid_block_type') is None else 'middle_block present'
    return dict(adapter='single_file', ok=not bad,
                detail=f'{len(ldm)} UNet tensors in the LDM layout, {mid}'
                if not bad else f'does not convert back: {bad[:5]}')


def find_unet_dir(path: str) -> str:
    for cand in (osp.join(path, 'final', 'unet'), osp.join(path, 'unet'),
                 path):
        if osp.isfile(osp.join(cand, 'config.json')):
            with open(osp.join(cand, 'config.json')) as f:
                if json.load(f).get('_class_name') == 'UNet2DConditionModel':
                    return cand
    raise FileNotFoundError(
        f'{path}: no UNet found (looked for final/unet, unet/ and a UNet '
        'folder itself)')


def compat_report(path_or_unet) -> List[Dict]:
    """One row per adapter: ``adapter``, ``ok``, ``detail``."""
    from diffusers import UNet2DConditionModel
    unet = path_or_unet if isinstance(path_or_unet, nn.Module) else \
        UNet2DConditionModel.from_pretrained(find_unet_dir(path_or_unet))
    unet.eval()
    torch.manual_seed(0)
    return [check(unet) for check in (check_controlnet, check_ip_adapter,
                                      check_lora, check_single_file)]

