"""Tiny SD-1.5 and SDXL pipelines with the real UNet topology.

The toy UNet config is the shipped real teacher config (SD-1.5 or SDXL-base)
with only its widths replaced: block types, ``layers_per_block``, transformer
depth per stage, mid block and SDXL's addition time embedding are kept, so
every compression recipe, feature pattern and LoRA target written for the
real models runs unchanged on the toy ones.
"""
import copy
import os
from typing import Callable, Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import (AutoencoderKL, EulerDiscreteScheduler,
                       StableDiffusionPipeline, StableDiffusionXLPipeline,
                       UNet2DConditionModel)
from transformers import (CLIPTextConfig, CLIPTextModel,
                          CLIPTextModelWithProjection)

from diffkd.models.compression.teacher_configs import load_teacher_config
from .tokenizer import build_toy_tokenizer

TOY_IMAGE_SIZE = 32
TOY_VAE_DOWNSCALE = 4  # three VAE stages -> 8x8 latents for 32 px images
TEXT_DIM = 32
TIME_EMBED_DIM = 8
# Real teacher config each toy topology is derived from.
TOY_TOPOLOGIES = {'sd15': 'sd15', 'sdxl': 'sdxl_base'}
_TOY_WIDTHS = {'sd15': [16, 32, 32, 32], 'sdxl': [16, 32, 32]}
_HEAD_DIM = 16


def toy_unet_config(kind: str) -> Dict:
    """The real teacher's UNet config at toy width (same topology)."""
    if kind not in TOY_TOPOLOGIES:
        raise KeyError(f'unknown toy topology {kind!r}; known: '
                       f'{sorted(TOY_TOPOLOGIES)}')
    cfg = copy.deepcopy(load_teacher_config(TOY_TOPOLOGIES[kind]))
    widths = _TOY_WIDTHS[kind]
    cfg.update(
        block_out_channels=widths,
        attention_head_dim=[max(1, w // _HEAD_DIM) for w in widths],
        norm_num_groups=8,
        sample_size=TOY_IMAGE_SIZE // TOY_VAE_DOWNSCALE,
    )
    if kind == 'sdxl':
        cfg.update(
            cross_attention_dim=2 * TEXT_DIM,
            addition_time_embed_dim=TIME_EMBED_DIM,
            addition_embed_type_num_heads=4,
            projection_class_embeddings_input_dim=TEXT_DIM +
            6 * TIME_EMBED_DIM)
    else:
        cfg.update(cross_attention_dim=TEXT_DIM)
    for key in ('_class_name', '_diffusers_version'):
        cfg.pop(key, None)
    return cfg


def toy_text_encoder_config(vocab_size: int) -> CLIPTextConfig:
    return CLIPTextConfig(
        vocab_size=vocab_size,
        hidden_size=TEXT_DIM,
        intermediate_size=2 * TEXT_DIM,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        projection_dim=TEXT_DIM,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def toy_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=['DownEncoderBlock2D'] * 3,
        up_block_types=['UpDecoderBlock2D'] * 3,
        block_out_channels=[16, 32, 32],
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=TOY_IMAGE_SIZE,
    )


def toy_scheduler() -> EulerDiscreteScheduler:
    """SD's noise schedule rescaled to zero terminal SNR, v-prediction and
    trailing timesteps (Lin et al., 2024).

    With SD's plain schedule the most-noised training input still shows an
    image's mean colour, which sampling from pure noise never does; on
    flat-coloured toy images the model then ignores the colour words. Zero
    terminal SNR removes that leak.
    """
    return EulerDiscreteScheduler(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule='scaled_linear',
        prediction_type='v_prediction',
        rescale_betas_zero_snr=True,
        timestep_spacing='trailing')


def train_toy_vae(images: np.ndarray,
                  steps: int = 2000,
                  batch_size: int = 16,
                  seed: int = 0,
                  progress: Optional[Callable[[int, float], None]] = None
                  ) -> AutoencoderKL:
    """Train the toy VAE to reconstruct toy images (NHWC uint8).

    Sets ``scaling_factor`` to 1/std of the latents, as SD does, so that
    scaled latents have unit variance.
    """
    torch.manual_seed(seed)
    vae = toy_vae()
    data = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        idx = torch.randint(0, len(data), (batch_size, ), generator=gen)
        x = data[idx]
        posterior = vae.encode(x).latent_dist
        recon = vae.decode(posterior.sample(generator=gen)).sample
        kl = posterior.kl().mean() / x[0].numel()
        loss = F.mse_loss(recon, x) + 1e-6 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if progress is not None:
            progress(step, loss.item())
    vae.eval()
    with torch.no_grad():
        lat = torch.cat([
            vae.encode(data[i:i + 256]).latent_dist.mean
            for i in range(0, len(data), 256)
        ])
    vae.register_to_config(scaling_factor=float(1.0 / lat.std()))
    return vae


def toy_text_encoder(cfg: CLIPTextConfig, projection: bool = False):
    """A random CLIP text encoder whose word identity dominates its output.

    CLIP's default init gives token and position embeddings the same small
    scale, so untrained outputs barely tell prompts apart; unit-variance
    token embeddings keep words distinct while the causal layers still mix
    in their neighbours (which colour goes with the shape).
    """
    model = (CLIPTextModelWithProjection if projection else CLIPTextModel)(cfg)
    emb = model.get_input_embeddings().weight
    with torch.no_grad():
        emb.normal_(0.0, 1.0)
    return model


def build_toy_pipeline(kind: str, vae: AutoencoderKL, seed: int = 0):
    """Assemble a toy pipeline: given VAE, random UNet and text encoders."""
    torch.manual_seed(seed)
    tokenizer = build_toy_tokenizer()
    te_cfg = toy_text_encoder_config(len(tokenizer))
    unet = UNet2DConditionModel(**toy_unet_config(kind))
    if kind == 'sd15':
        return StableDiffusionPipeline(
            vae=vae,
            text_encoder=toy_text_encoder(te_cfg),
            tokenizer=tokenizer,
            unet=unet,
            scheduler=toy_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False)
    return StableDiffusionXLPipeline(
        vae=vae,
        text_encoder=toy_text_encoder(te_cfg),
        text_encoder_2=toy_text_encoder(te_cfg, projection=True),
        tokenizer=tokenizer,
        tokenizer_2=build_toy_tokenizer(),
        unet=unet,
        scheduler=toy_scheduler())


def vae_reconstruction_psnr(vae: AutoencoderKL, images: np.ndarray) -> float:
    """Mean PSNR (dB) of VAE reconstructions of NHWC uint8 images."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        rec = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    mse = ((rec - x)**2).mean(dim=(1, 2, 3)) / 4.0  # in [0, 1] units
    return float((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean())


def save_pipeline(pipe, out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


__all__ = [
    'toy_unet_config', 'toy_text_encoder_config', 'toy_vae',
    'toy_scheduler', 'train_toy_vae', 'build_toy_pipeline',
    'vae_reconstruction_psnr', 'save_pipeline', 'TOY_IMAGE_SIZE'
]
