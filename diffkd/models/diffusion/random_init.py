"""Published pipelines with random weights, for offline cost measurements.

Speed and memory do not depend on weight values, so a pipeline folder with
the real architecture of every component (UNet from the shipped teacher
configs, the VAE and CLIP text encoders below) and random weights measures
what the real model costs, without a model hub. The tokenizer spells
prompts letter by letter: the real BPE vocabulary is not shipped, and a
token id only picks an embedding row (prompts are padded to 77 tokens
either way).

``width_divisor`` narrows every channel count (UNet, VAE, text encoders,
cross-attention and SDXL's added embeddings) by the same factor and keeps
everything else: block types, layers, transformer depths, heads, linear
projection, upcast flags and channels per norm group. Tests use it to run the
real topologies, conditioning included, at a fraction of the cost.
"""
import os.path as osp
from typing import Dict, List

import torch

from diffkd.models.compression.teacher_configs import (KNOWN_TEACHERS,
                                                       load_teacher_config)

# Architecture facts of the published components (diffusers/transformers
# config keys); token ids follow diffkd.utils.tokenizer.
_SD_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4,
    down_block_types=['DownEncoderBlock2D'] * 4,
    up_block_types=['UpDecoderBlock2D'] * 4,
    block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    norm_num_groups=32, act_fn='silu', scaling_factor=0.18215)
_CLIP_L = dict(  # openai/clip-vit-large-patch14, SD-1.x and SDXL encoder 1
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
    num_attention_heads=12, hidden_act='quick_gelu', projection_dim=768)
_OPENCLIP_H = dict(  # SD-2.x (penultimate layer kept: 23 of 24 layers)
    hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
    num_attention_heads=16, hidden_act='gelu', projection_dim=512)
_OPENCLIP_BIGG = dict(  # SDXL encoder 2, with the pooled projection
    hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
    num_attention_heads=20, hidden_act='gelu', projection_dim=1280)

ARCHITECTURES: Dict[str, Dict] = {
    'sd15': dict(vae=dict(_SD_VAE, sample_size=512),
                 text_encoders=[_CLIP_L], prediction_type='epsilon'),
    'sd21': dict(vae=dict(_SD_VAE, sample_size=768),
                 text_encoders=[_OPENCLIP_H],
                 prediction_type='v_prediction'),
    'sdxl_base': dict(vae=dict(_SD_VAE, sample_size=1024,
                               scaling_factor=0.13025, force_upcast=True),
                      text_encoders=[_CLIP_L, _OPENCLIP_BIGG],
                      prediction_type='epsilon'),
}


def architecture_of(name: str) -> str:
    """Shipped architecture key of a known hub id or a key itself."""
    if name in ARCHITECTURES:
        return name
    if name in KNOWN_TEACHERS:
        return KNOWN_TEACHERS[name]
    raise KeyError(f'no published architecture known for {name!r}; known '
                   f'hub ids: {sorted(KNOWN_TEACHERS)}')


# Channel-count keys narrowed by ``width_divisor`` (head counts are kept).
_UNET_WIDTHS = ('block_out_channels', 'cross_attention_dim',
                'addition_time_embed_dim',
                'projection_class_embeddings_input_dim')
_TEXT_WIDTHS = ('hidden_size', 'intermediate_size', 'projection_dim')
_VAE_WIDTHS = ('block_out_channels', )


def _narrow(cfg: Dict, keys, divisor: int) -> Dict:
    cfg = dict(cfg)
    for key in keys:
        value = cfg.get(key)
        if value is None:
            continue
        if isinstance(value, (list, tuple)):
            cfg[key] = [v // divisor for v in value]
        else:
            cfg[key] = value // divisor
    if 'norm_num_groups' in cfg:
        # Same channels per group as the published model.
        cfg['norm_num_groups'] = cfg['norm_num_groups'] // divisor
    return cfg


def _text_encoder(arch: Dict, projection: bool):
    from transformers import (CLIPTextConfig, CLIPTextModel,
                              CLIPTextModelWithProjection)
    # The real vocabulary size: the embedding table is part of the memory.
    cfg = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77,
                         layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1, **arch)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


WIDTH_DIVISORS = (1, 2, 4, 8)


def random_unet_config(name: str, width_divisor: int = 1) -> Dict:
    """The published UNet config of ``name``, narrowed by
    ``width_divisor`` (see the module docstring)."""
    if width_divisor not in WIDTH_DIVISORS:
        raise ValueError(f'width_divisor must be one of {WIDTH_DIVISORS} '
                         f'(it must divide every width and the 32 norm '
                         f'groups), got {width_divisor!r}')
    cfg = {k: v for k, v in load_teacher_config(architecture_of(name)).items()
           if not k.startswith('_')}
    return _narrow(cfg, _UNET_WIDTHS, width_divisor)


def build_random_pipeline(name: str, seed: int = 0, width_divisor: int = 1):
    """The diffusers pipeline of ``name`` (hub id or architecture key) with
    random weights, in fp32; ``width_divisor`` > 1 narrows every width."""
    from diffusers import (AutoencoderKL, DDPMScheduler,
                           StableDiffusionPipeline, StableDiffusionXLPipeline,
                           UNet2DConditionModel)

    from diffkd.utils.tokenizer import build_word_tokenizer
    key = architecture_of(name)
    arch = ARCHITECTURES[key]
    unet_cfg = random_unet_config(key, width_divisor)
    torch.manual_seed(seed)
    tokenizers = [build_word_tokenizer() for _ in arch['text_encoders']]
    encoders: List = [
        _text_encoder(_narrow(te, _TEXT_WIDTHS, width_divisor),
                      projection=i == 1)
        for i, te in enumerate(arch['text_encoders'])
    ]
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
        beta_schedule='scaled_linear',
        prediction_type=arch['prediction_type'])
    vae = AutoencoderKL(**_narrow(arch['vae'], _VAE_WIDTHS, width_divisor))
    parts = dict(vae=vae,
                 unet=UNet2DConditionModel(**unet_cfg), scheduler=scheduler,
                 text_encoder=encoders[0], tokenizer=tokenizers[0])
    if len(encoders) == 2:
        return StableDiffusionXLPipeline(text_encoder_2=encoders[1],
                                         tokenizer_2=tokenizers[1], **parts)
    return StableDiffusionPipeline(safety_checker=None,
                                   feature_extractor=None,
                                   requires_safety_checker=False, **parts)


def save_random_pipeline(name: str, out_dir: str, seed: int = 0,
                         width_divisor: int = 1) -> str:
    """Write ``build_random_pipeline(name)`` to ``out_dir`` (safetensors);
    loading it goes through the usual ``from_pretrained`` path."""
    pipe = build_random_pipeline(name, seed, width_divisor)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    del pipe
    return osp.abspath(out_dir)


__all__ = [
    'ARCHITECTURES', 'WIDTH_DIVISORS', 'architecture_of',
    'build_random_pipeline', 'random_unet_config', 'save_random_pipeline'
]
