"""LoRA through peft on whichever UNet (and text encoders) a wrapper trains.

Adapters are saved in the layout diffusers' ``load_lora_weights`` reads:
``pytorch_lora_weights.safetensors`` with diffusers key names.
"""
from typing import Dict, Optional, Sequence

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
             'text_encoder_targets', 'use_dora')


def add_lora_from_config(model: nn.Module, cfg: Dict) -> None:
    """A model's ``lora=dict(...)``: adapters on its UNet and, with
    ``text_encoder=True``, on each of its text encoders (which then encode
    prompts with gradients)."""
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
