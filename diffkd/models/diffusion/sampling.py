"""Sampling from a model through a diffusers pipeline that shares its
modules."""
from contextlib import contextmanager
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn as nn


def unscale_latents(vae_config, latents: torch.Tensor) -> torch.Tensor:
    """Final latents back to the VAE's own scale, as diffusers' pipelines
    do before decoding (SDXL-style ``latents_mean``/``latents_std`` when
    the VAE has them)."""
    mean = getattr(vae_config, 'latents_mean', None)
    std = getattr(vae_config, 'latents_std', None)
    if mean is not None and std is not None:
        mean = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        return latents * std / vae_config.scaling_factor + mean
    return latents / vae_config.scaling_factor


def cast_floating(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``module``'s floating-point weights in ``dtype`` through torch's own
    ``bfloat16()``/``half()``/``float()`` (diffusers' ``to(dtype)`` warns
    about fp32 modules even when a UNet has none)."""
    cast = {torch.bfloat16: module.bfloat16, torch.float16: module.half,
            torch.float32: module.float}
    return cast[dtype]()


@contextmanager
def full_precision(unet: nn.Module):
    """``unet`` in fp32 inside (a pipeline feeds it fp32 latents and text
    states); a bf16/fp16 UNet is cast back after, exactly (fp32 holds every
    bf16/fp16 value)."""
    dtype = next(unet.parameters()).dtype
    if dtype not in (torch.bfloat16, torch.float16):
        yield unet
        return
    unet.float()
    try:
        yield unet
    finally:
        cast_floating(unet, dtype)


class Sampling:
    """Mixin: images and final latents for prompts and seeds, through
    ``self.pipeline(unet)`` (a diffusers pipeline around the model's own
    modules)."""

    @torch.no_grad()
    def predict(self, prompts: List[str], seeds=None, indices=None,
                unet: Optional[nn.Module] = None, **sampling) -> List[Dict]:
        """Evaluation samples: per prompt a dict with its ``prompt``,
        ``seed``, ``index``, final ``latent`` and decoded uint8 ``image``."""
        seeds = list(seeds) if seeds is not None else list(
            range(len(prompts)))
        indices = list(indices) if indices is not None else list(
            range(len(prompts)))
        latents = self.generate(prompts, seeds, unet=unet,
                                output_type='latent', **sampling)
        images = self.decode_latents(torch.stack(latents))
        return [
            dict(prompt=p, seed=int(s), index=int(i), latent=lat.cpu(),
                 image=img)
            for p, s, i, lat, img in zip(prompts, seeds, indices, latents,
                                         images)
        ]

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """Final latents -> uint8 ``NxHxWx3`` images, as the pipeline's own
        decoding does it."""
        p = next(self.vae.parameters())
        lat = unscale_latents(self.vae.config, latents.to(p.device, p.dtype))
        img = (self.vae.decode(lat).sample / 2 + 0.5).clamp(0, 1)
        img = img.permute(0, 2, 3, 1).float().cpu().numpy()
        return (img * 255).round().astype(np.uint8)

    @torch.no_grad()
    def generate(self,
                 prompts: List[str],
                 seeds: Optional[List[int]] = None,
                 negative_prompt: Optional[str] = None,
                 num_inference_steps: int = 25,
                 guidance_scale: float = 7.5,
                 height: Optional[int] = None,
                 width: Optional[int] = None,
                 unet: Optional[nn.Module] = None,
                 output_type: str = 'pil',
                 batch_size: int = 16):
        """Sample one image per prompt; seed ``seeds[i]`` for prompt i.

        Prompts go through the pipeline ``batch_size`` at a time, each with
        its own generator, so an image does not depend on its batch-mates.
        """
        with full_precision(self.unet if unet is None else unet):
            return self._generate(prompts, seeds, negative_prompt,
                                  num_inference_steps, guidance_scale,
                                  height, width, unet, output_type,
                                  batch_size)

    def _generate(self, prompts, seeds, negative_prompt, num_inference_steps,
                  guidance_scale, height, width, unet, output_type,
                  batch_size):
        pipe = self.pipeline(unet)
        pipe.set_progress_bar_config(disable=True)
        seeds = seeds if seeds is not None else list(range(len(prompts)))
        was_training = self.training
        self.eval()
        images = []
        try:
            for i in range(0, len(prompts), batch_size):
                chunk = list(prompts[i:i + batch_size])
                gens = [torch.Generator(device='cpu').manual_seed(int(s))
                        for s in seeds[i:i + batch_size]]
                out = pipe(
                    chunk,
                    negative_prompt=None if negative_prompt is None else
                    [negative_prompt] * len(chunk),
                    num_inference_steps=num_inference_steps,
                    guidance_scale=guidance_scale,
                    height=height,
                    width=width,
                    generator=gens,
                    output_type=output_type)
                images.extend(list(out.images))
        finally:
            self.train(was_training)
        return images
