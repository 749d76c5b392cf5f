"""LoRA through peft on whichever UNet (and text encoders) a wrapper trains.

Adapters are saved in the layout diffusers' ``load_lora_weights`` reads:
``pytorch_lora_weights.safetensors`` with diffusers key names.
"""
import json
import os.path as osp
from typing import Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

UNET_TARGETS = ('to_q', 'to_k', 'to_v', 'to_out.0')
TEXT_ENCODER_TARGETS = ('q_proj', 'k_proj', 'v_proj', 'out_proj')


def add_lora(module: nn.Module,
             rank: int = 8,
             alpha: Optional[float] = None,
             dropout: float = 0.0,
             target_modules: Optional[Sequence[str]] = None,
             default_targets: Sequence[str] = UNET_TARGETS,
             use_dora: bool = False) -> nn.Module:
    """Freeze ``module`` and add a LoRA adapter: only LoRA weights train
    (``use_dora``: peft's weight-decomposed DoRA variant)."""
    from peft import LoraConfig
    module.requires_grad_(False)
    targets = list(target_modules or default_targets)
    names = [n for n, _ in module.named_modules()]
    if not any(n == t or n.endswith('.' + t) for t in targets
               for n in names):
        raise ValueError(
            f'LoRA target modules {targets} match no module of '
            f'{type(module).__name__}; candidate layer names: '
            f'{", ".join(lora_candidates(module))}')
    module.add_adapter(
        LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else rank,
            lora_dropout=dropout,
            init_lora_weights='gaussian',
            target_modules=targets,
            use_dora=use_dora))
    return module


LORA_KEYS = ('rank', 'alpha', 'dropout', 'target_modules', 'text_encoder',
             'text_encoder_targets', 'use_dora', 'weights')


def add_lora_from_config(model: nn.Module, cfg: Dict) -> None:
    """A model's ``lora=dict(...)``: adapters on its UNet and, with
    ``text_encoder=True``, on each of its text encoders (which then encode
    prompts with gradients). ``weights``: a diffusers LoRA file (or a
    folder holding one) the adapters start from instead of their random
    initialisation, e.g. a teacher's LoRA transplanted onto a student
    (``tools/transplant_lora.py``); it must fit them exactly."""
    unknown = set(cfg) - set(LORA_KEYS)
    if unknown:
        raise ValueError(f'unknown lora keys {sorted(unknown)}; lora takes: '
                         f'{", ".join(LORA_KEYS)}')
    common = dict(rank=cfg.get('rank', 8), alpha=cfg.get('alpha'),
                  dropout=cfg.get('dropout', 0.0),
                  use_dora=cfg.get('use_dora', False))
    add_lora(model.unet, target_modules=cfg.get('target_modules'), **common)
    if cfg.get('text_encoder'):
        model.finetune_text_encoder = True
        for name in model.text_encoder_names:
            add_lora(getattr(model, name),
                     target_modules=cfg.get('text_encoder_targets'),
                     default_targets=TEXT_ENCODER_TARGETS, **common)
    if cfg.get('weights'):
        path = lora_file(cfg['weights'])
        content = read_lora_file(path)
        state = content[0]
        components = ['unet'] + [n for n in model.text_encoder_names
                                 if cfg.get('text_encoder')]
        extra = sorted({k.split('.')[0] for k in state} - set(components))
        if extra:
            raise ValueError(
                f'{path} holds LoRA weights for {extra}, which carry no '
                f'adapter here (adapters on: {components}); set '
                'lora.text_encoder=True to train text-encoder LoRA too')
        for name in components:
            set_lora_weights(getattr(model, name), path, name, content)


def lora_candidates(module: nn.Module) -> Sequence[str]:
    """Names that ``target_modules`` can use: the distinct trailing names of
    the linear and convolution layers (``to_q``, ``to_out.0``, ``proj_in``).
    """
    names = set()
    for name, sub in module.named_modules():
        if isinstance(sub, (nn.Linear, nn.Conv2d)) and name:
            parts = name.split('.')
            tail = parts[-2:] if parts[-1].isdigit() else parts[-1:]
            names.add('.'.join(tail))
    return sorted(names)


def lora_state_dict(module: nn.Module) -> Dict:
    """The adapter's weights, keyed ``<layer>.lora_A/lora_B.weight``.

    Kept in peft's naming for every layer: diffusers' older naming
    (``.lora.down``) covers attention projections only, and a file that
    mixes the two loads only the layers named like its first key.
    """
    from peft.utils import get_peft_model_state_dict
    # contiguous: a channels_last UNet's conv adapters are NHWC, and
    # safetensors stores only contiguous tensors
    return {k: v.contiguous()
            for k, v in get_peft_model_state_dict(module).items()}


LORA_WEIGHT_NAME = 'pytorch_lora_weights.safetensors'


def lora_file(path: str) -> str:
    """The diffusers LoRA file at ``path``: the file itself, or
    ``pytorch_lora_weights.safetensors`` in a folder (a run's
    ``final/lora``)."""
    found = osp.join(path, LORA_WEIGHT_NAME) if osp.isdir(path) else path
    if not osp.isfile(found):
        raise FileNotFoundError(
            f'{path}: no diffusers LoRA file (a .safetensors file, or a '
            f'folder holding {LORA_WEIGHT_NAME})')
    return found


def read_lora_file(path: str) -> Tuple[Dict[str, torch.Tensor], Dict]:
    """A diffusers LoRA file's tensors (``unet.<module>.lora_A.weight``
    ...) and its adapter configs (diffusers' ``lora_adapter_metadata``,
    keys ``unet.r``, ``unet.lora_alpha``...; empty when not recorded)."""
    from safetensors import safe_open
    with safe_open(path, framework='pt') as f:
        state = {k: f.get_tensor(k) for k in f.keys()}
        raw = (f.metadata() or {}).get('lora_adapter_metadata')
    return state, json.loads(raw) if raw else {}


def _component_part(path: str, state: Dict[str, torch.Tensor], meta: Dict,
                    component: str):
    """``component``'s tensors and adapter config in a LoRA file's
    ``state`` and ``meta`` (:func:`read_lora_file`), without the
    ``component.`` prefix."""
    cut = len(component) + 1
    part = {k[cut:]: v for k, v in state.items()
            if k.startswith(component + '.')}
    if not part:
        raise ValueError(
            f"{path}: no LoRA weights for the {component} (keys "
            f"'{component}.<module>.lora_A.weight'); the file's keys start "
            f"with {sorted({k.split('.')[0] for k in state})}")
    return part, {k[cut:]: v for k, v in meta.items()
                  if k.startswith(component + '.')}


def set_lora_weights(module: nn.Module, path: str,
                     component: str = 'unet',
                     content: Optional[Tuple[Dict, Dict]] = None) -> None:
    """Put a LoRA file's ``component`` weights into the adapter already on
    ``module`` (:func:`add_lora`). File and adapter must match exactly:
    the same layers, shapes and, where the file records them, rank and
    alpha; anything else is an error naming the first differences.
    ``content``: the file's :func:`read_lora_file` result, when the caller
    has read it already."""
    from peft.utils import set_peft_model_state_dict
    path = lora_file(path)
    part, meta = _component_part(path, *(content or read_lora_file(path)),
                                 component)
    config = next(iter(module.peft_config.values()))
    for key in ('r', 'lora_alpha', 'use_dora'):
        if key in meta and meta[key] != getattr(config, key):
            raise ValueError(
                f'{path}: its {component} LoRA has {key}={meta[key]}, the '
                f'adapter it should start has {key}={getattr(config, key)}; '
                'give lora=dict(rank=..., alpha=...) the values of the file')
    own = lora_state_dict(module)
    missing, unexpected = sorted(set(own) - set(part)), \
        sorted(set(part) - set(own))
    if missing or unexpected:
        raise ValueError(
            f'{path}: its {component} LoRA does not fit the adapter: '
            f'{len(missing)} adapter layers have no weights in the file '
            f'(e.g. {missing[:2]}), {len(unexpected)} file weights have no '
            f'layer (e.g. {unexpected[:2]}). Is it the file for this UNet '
            '(a teacher LoRA transplanted onto the student with '
            'tools/transplant_lora.py) with the same target_modules?')
    for key, value in part.items():
        if value.shape != own[key].shape:
            raise ValueError(
                f'{path}: {component}.{key} is {tuple(value.shape)}, the '
                f'adapter layer is {tuple(own[key].shape)}')
    set_peft_model_state_dict(module, part)


def load_lora_file(unet: nn.Module, path: str) -> nn.Module:
    """A LoRA file's UNet adapter on ``unet`` as the file describes it
    (diffusers' loader, rank and alpha from the file), frozen: a teacher
    that samples or supervises with its LoRA. Every file weight must land
    on a layer of ``unet``."""
    path = lora_file(path)
    state, meta = read_lora_file(path)
    others = sorted(k for k in state if not k.startswith('unet.'))
    if others:
        raise ValueError(
            f'{path} holds LoRA weights beside the UNet\'s ({others[0]} ...); '
            'a distillation teacher is a UNet that shares the student\'s '
            'text encoders, so only a UNet LoRA can be loaded into it')
    part, _ = _component_part(path, state, meta, 'unet')
    unet.load_lora_adapter(state, prefix='unet', metadata=meta or None,
                           adapter_name='default')
    unexpected = sorted(set(part) - set(lora_state_dict(unet)))
    if unexpected:
        raise ValueError(
            f'{path}: {len(unexpected)} LoRA weights name no layer of the '
            f'teacher UNet (e.g. unet.{unexpected[0]}): is it a LoRA for '
            'another model (a student\'s, a transplanted one)?')
    for p in unet.parameters():
        p.requires_grad_(False)
    return unet


def lora_metadata(module: nn.Module) -> Dict:
    """The adapter's LoraConfig (rank, alpha, targets) as a plain dict."""
    config = next(iter(module.peft_config.values())).to_dict()
    return {k: (sorted(v) if isinstance(v, set) else v)
            for k, v in config.items()}


def save_lora(pipeline_cls, out_dir: str, unet: nn.Module,
              text_encoders: Dict[str, nn.Module]) -> None:
    """``pipeline_cls.save_lora_weights`` for the UNet and any text encoder
    that carries an adapter (``text_encoder``, ``text_encoder_2``), with
    each adapter's LoraConfig as metadata so ``alpha`` survives loading;
    the same adapters in the kohya/A1111 format beside it
    (:data:`.kohya.KOHYA_WEIGHT_NAME`; not for DoRA, which
    that format cannot hold faithfully)."""
    import os.path as osp

    from .kohya import KOHYA_WEIGHT_NAME, save_kohya_lora
    kwargs = {'unet_lora_layers': lora_state_dict(unet),
              'unet_lora_adapter_metadata': lora_metadata(unet)}
    for name, encoder in text_encoders.items():
        if getattr(encoder, 'peft_config', None):
            kwargs[f'{name}_lora_layers'] = lora_state_dict(encoder)
            kwargs[f'{name}_lora_adapter_metadata'] = lora_metadata(encoder)
    pipeline_cls.save_lora_weights(
        out_dir, safe_serialization=True, **kwargs)
    layers = {n[:-len('_lora_layers')]: v for n, v in kwargs.items()
              if n.endswith('_lora_layers')}
    alphas = {n: kwargs[f'{n}_lora_adapter_metadata']['lora_alpha']
              for n in layers}
    if not any(c.get('use_dora') for n, c in kwargs.items()
               if n.endswith('_metadata')):
        save_kohya_lora(osp.join(out_dir, KOHYA_WEIGHT_NAME), layers,
                        alphas)
