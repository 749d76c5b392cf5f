"""Published pipelines with random weights, for offline cost measurements.

Speed and memory do not depend on weight values, so a pipeline folder with
the real architecture of every component (UNet from the shipped teacher
configs, the VAE and CLIP text encoders below) and random weights measures
what the real model costs, without a model hub. The tokenizer spells
prompts letter by letter: the real BPE vocabulary is not shipped, and a
token id only picks an embedding row (prompts are padded to 77 tokens
either way).
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


def _text_encoder(arch: Dict, projection: bool):
    from transformers import (CLIPTextConfig, CLIPTextModel,
                              CLIPTextModelWithProjection)
    # The real vocabulary size: the embedding table is part of the memory.
    cfg = CLIPTextConfig(vocab_size=49408, max_position_embeddings=77,
                         layer_norm_eps=1e-5, bos_token_id=0, eos_token_id=1,
                         pad_token_id=1, **arch)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)


def build_random_pipeline(name: str, seed: int = 0):
    """The diffusers pipeline of ``name`` (hub id or architecture key) with
    random weights, in fp32."""
    from diffusers import (AutoencoderKL, DDPMScheduler,
                           StableDiffusionPipeline, StableDiffusionXLPipeline,
                           UNet2DConditionModel)

    from diffkd.utils.tokenizer import build_word_tokenizer
    key = architecture_of(name)
    arch = ARCHITECTURES[key]
    torch.manual_seed(seed)
    tokenizers = [build_word_tokenizer() for _ in arch['text_encoders']]
    encoders: List = [
        _text_encoder(te, projection=i == 1)
        for i, te in enumerate(arch['text_encoders'])
    ]
    unet_cfg = {k: v for k, v in load_teacher_config(key).items()
                if not k.startswith('_')}
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
        beta_schedule='scaled_linear',
        prediction_type=arch['prediction_type'])
    parts = dict(vae=AutoencoderKL(**arch['vae']),
                 unet=UNet2DConditionModel(**unet_cfg), scheduler=scheduler,
                 text_encoder=encoders[0], tokenizer=tokenizers[0])
    if len(encoders) == 2:
        return StableDiffusionXLPipeline(text_encoder_2=encoders[1],
                                         tokenizer_2=tokenizers[1], **parts)
    return StableDiffusionPipeline(safety_checker=None,
                                   feature_extractor=None,
                                   requires_safety_checker=False, **parts)


def save_random_pipeline(name: str, out_dir: str, seed: int = 0) -> str:
    """Write ``build_random_pipeline(name)`` to ``out_dir`` (safetensors);
    loading it goes through the usual ``from_pretrained`` path."""
    pipe = build_random_pipeline(name, seed)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    del pipe
    return osp.abspath(out_dir)


__all__ = [
    'ARCHITECTURES', 'architecture_of', 'build_random_pipeline',
    'save_random_pipeline'
]
