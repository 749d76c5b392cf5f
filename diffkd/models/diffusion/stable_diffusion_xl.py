"""SDXL wrapper: two text encoders, pooled text embeds and micro-conditioning
time ids (original size, crop top-left, target size) from the data
pipeline."""
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from diffusers import StableDiffusionXLPipeline
from transformers import (CLIPTextModel, CLIPTextModelWithProjection,
                          CLIPTokenizer)

from diffkd.registry import MODELS
from .loading import load_component
from .stable_diffusion import StableDiffusion


@MODELS.register_module()
class StableDiffusionXL(StableDiffusion):
    """SDXL (and SDXL-topology students such as SSD-1B, Vega, KOALA)."""
    text_encoder_names = ('text_encoder', 'text_encoder_2')
    pipeline_class_name = 'StableDiffusionXLPipeline'

    def load_text_components(self, model: str):
        self.tokenizer = load_component(CLIPTokenizer, model, 'tokenizer')
        self.tokenizer_2 = load_component(CLIPTokenizer, model,
                                          'tokenizer_2')
        self.text_encoder = load_component(CLIPTextModel, model,
                                           'text_encoder')
        self.text_encoder_2 = load_component(CLIPTextModelWithProjection,
                                             model, 'text_encoder_2')

    def encode_prompt(self, texts: List[str], inputs: Optional[Dict] = None):
        hidden = []
        pooled = None
        for tokenizer, encoder in ((self.tokenizer, self.text_encoder),
                                   (self.tokenizer_2, self.text_encoder_2)):
            out = encoder(
                self.tokenize(tokenizer, texts), output_hidden_states=True)
            # SDXL conditions on the penultimate layer of both encoders and
            # on the second encoder's pooled, projected embedding.
            hidden.append(out.hidden_states[-2])
            pooled = out[0]
        hidden = torch.cat(hidden, dim=-1)
        if not all(texts):  # decided on the host: no device sync
            empty = torch.tensor([not t for t in texts], device=hidden.device)
            # SDXL's unconditional input is zeros, not the encoded empty
            # prompt (``force_zeros_for_empty_prompt`` in the pipeline).
            hidden = hidden.masked_fill(empty[:, None, None], 0.0)
            pooled = pooled.masked_fill(empty[:, None], 0.0)
        time_ids = self.time_ids_for(inputs, len(texts))
        return hidden, dict(text_embeds=pooled, time_ids=time_ids)

    def cached_prompt(self, inputs: Dict):
        n = inputs['prompt_embeds'].shape[0]
        return inputs['prompt_embeds'], dict(
            text_embeds=inputs['text_embeds'],
            time_ids=self.time_ids_for(inputs, n))

    def time_ids_for(self, inputs: Optional[Dict], n: int) -> torch.Tensor:
        if inputs is not None and inputs.get('time_ids') is not None:
            return inputs['time_ids'].to(self.device, torch.float32)
        if inputs is not None and 'img' in inputs:
            h, w = inputs['img'].shape[-2:]
        else:
            size = self.unet.config.sample_size * self.vae_scale_factor
            h = w = size
        # No pipeline information: an uncropped image at its own size.
        ids = torch.tensor([h, w, 0, 0, h, w], dtype=torch.float32)
        return ids.repeat(n, 1).to(self.device)

    @property
    def vae_scale_factor(self) -> int:
        return 2**(len(self.vae.config.block_out_channels) - 1)

    def pipeline(self, unet: Optional[nn.Module] = None):
        return StableDiffusionXLPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            text_encoder_2=self.text_encoder_2,
            tokenizer=self.tokenizer,
            tokenizer_2=self.tokenizer_2,
            unet=unet if unet is not None else self.unet,
            scheduler=self.scheduler_for_sampling())
