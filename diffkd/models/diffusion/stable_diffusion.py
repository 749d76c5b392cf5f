"""Stable Diffusion 1.x/2.x as an mmengine model: its components, prompt
and image encoding, and the jobs it composes (one module each): the
training step (:mod:`.step`), held-out validation (:mod:`.validation`),
sampling (:mod:`.sampling`), the diffusers export (:mod:`.export`), frozen
parts (:mod:`.frozen`) and where each component comes from
(:mod:`.components`)."""
from typing import Dict, List, Optional, Union

import torch
import torch.nn as nn
from diffusers import AutoencoderKL, DDPMScheduler, StableDiffusionPipeline
from mmengine.logging import print_log
from mmengine.model import BaseModel
from transformers import CLIPTextModel, CLIPTokenizer

from diffkd.registry import MODELS
from .components import (build_component, build_unet,
                         check_component_names, load_scheduler,
                         normalized_spec)
from .export import DiffusersExport
from .frozen import FrozenChildrenStayInEval, FrozenWeightsOutOfCheckpoints
from .sampling import Sampling, cast_floating
from .speed import configure_unet, speed_options
from .step import DetachedLogVars, LatentDiffusionStep
from .validation import HeldOutLossStep


STORAGE_DTYPES = (None, 'float32', 'bfloat16', 'float16')


@MODELS.register_module()
class StableDiffusion(LatentDiffusionStep, HeldOutLossStep, Sampling,
                      DiffusersExport, FrozenChildrenStayInEval,
                      DetachedLogVars, FrozenWeightsOutOfCheckpoints,
                      BaseModel):
    """Text-to-image latent diffusion with a trainable UNet (SD 1.x/2.x).

    Args:
        model: hub id or local folder of a diffusers pipeline.
        unet: where the trained UNet comes from (see :mod:`.components`).
        components: other components taken from elsewhere than ``model``,
            by name (``vae``, ``text_encoder``, ``tokenizer``,
            ``scheduler``; SDXL adds ``text_encoder_2``, ``tokenizer_2``),
            each a path, hub id or dict as ``unet`` takes; e.g.
            ``dict(vae='madebyollin/sdxl-vae-fp16-fix')``. Samples and
            exports use them too.
        loss: task loss config (``L2Loss``, ``SNRL2Loss``).
        prediction_type: ``'epsilon'`` or ``'v_prediction'``; default is
            the scheduler's.
        noise_offset: std of a per-channel constant added to the noise.
        finetune_text_encoder: train the text encoder(s) too.
        gradient_checkpointing: trade compute for memory in the UNet.
        lora: train LoRA adapters instead of full weights:
            ``dict(rank=8, alpha=8, dropout=0.0, target_modules=None,
            text_encoder=False, use_dora=False)``; exports go to ``lora/``
            (diffusers' file and a kohya/A1111 one).
        prior_loss_weight: weight of the class rows' loss when a batch
            carries ``is_prior`` (DreamBooth prior preservation).
        attention / channels_last / compile: speed switches for the UNet
            (see :mod:`.speed`); a distiller applies them to its teacher too.
            ``channels_last`` is on by default: faster on CPUs and GPUs,
            same results within float rounding (docs/performance.md).
        dtype: what the trained UNet is stored in: None (as loaded, fp32)
            or ``'bfloat16'``/``'float16'``; ``DiffusionOptimWrapper`` keeps
            fp32 master weights for the optimizer, so a parameter costs
            more bytes than in fp32 (18 vs 16 with AdamW): the saving is
            in activations (docs/performance.md). The UNet runs in that
            dtype; its inputs are cast to it and its output back to fp32.
    """
    text_encoder_names = ('text_encoder', )
    text_encoder_names = ('text_encoder', )
    # name (also the base pipeline's subfolder) -> class
    component_classes = dict(
        tokenizer=CLIPTokenizer, text_encoder=CLIPTextModel,
        vae=AutoencoderKL, scheduler=DDPMScheduler)

    def __init__(self,
                 model: str,
                 unet: Union[None, str, dict, nn.Module] = None,
                 components: Optional[dict] = None,
                 loss: Optional[dict] = None,
                 prediction_type: Optional[str] = None,
                 noise_offset: float = 0.0,
                 finetune_text_encoder: bool = False,
                 gradient_checkpointing: bool = False,
                 lora: Optional[dict] = None,
                 prior_loss_weight: float = 1.0,
                 attention: Optional[str] = None,
                 channels_last: bool = True,
                 compile: Union[bool, dict, None] = None,
                 dtype: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='DiffusionDataPreprocessor')
        super().__init__(
            data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.model = model
        self.noise_offset = noise_offset
        self.prior_loss_weight = prior_loss_weight
        self.finetune_text_encoder = finetune_text_encoder
        components = check_component_names(
            components, self.component_classes, type(self).__name__)
        for name, cls in self.component_classes.items():
            attr = 'noise_scheduler' if name == 'scheduler' else name
            setattr(self, attr,
                    build_component(cls, components.get(name), model, name))
        if prediction_type is not None:
            if prediction_type not in ('epsilon', 'v_prediction'):
                raise ValueError(f'prediction_type must be epsilon or '
                                 f'v_prediction, got {prediction_type!r}')
            self.noise_scheduler.register_to_config(
                prediction_type=prediction_type)
        self.unet = build_unet(unet, model)
        # Components from elsewhere (e.g. a distilled student's UNet, a
        # fixed VAE) are recorded so that exports rebuild the same pipeline.
        self.component_sources = {
            name: normalized_spec(spec, model, None)
            for name, spec in dict(components, unet=unet).items()
            if isinstance(spec, (str, dict))}
        self.loss_module = MODELS.build(loss or dict(type='L2Loss'))

        self.vae.requires_grad_(False)
        for name in self.text_encoder_names:
            getattr(self, name).requires_grad_(finetune_text_encoder)
        self.lora = dict(lora) if lora else None
        if self.lora:
            from ..lora import add_lora_from_config
            add_lora_from_config(self, self.lora)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if finetune_text_encoder:
                for name in self.text_encoder_names:
                    getattr(self, name).gradient_checkpointing_enable()
        if dtype not in STORAGE_DTYPES:
            raise ValueError(f'model.student.dtype (the trained UNet\'s '
                             f'storage) must be one of {STORAGE_DTYPES}, got '
                             f'{dtype!r}')
        if dtype is not None:
            cast_floating(self.unet, getattr(torch, dtype))
        self.unet_speed = speed_options(attention, channels_last, compile)
        configure_unet(self.unet, **self.unet_speed)
        self._warned_truncation = False
        self._init_checkpoint_filter()

    # ---------------------------------------------------- prompts and images
    @property
    def prediction_type(self) -> str:
        return self.noise_scheduler.config.prediction_type

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    def tokenize(self, tokenizer, texts: List[str]) -> torch.Tensor:
        max_len = tokenizer.model_max_length
        # Lengths per prompt: a batch may mix long and short prompts.
        longest = max((len(ids) for ids in tokenizer(
            list(texts), truncation=False).input_ids), default=0)
        if longest > max_len and not self._warned_truncation:
            self._warned_truncation = True
            print_log(
                f'a prompt has {longest} tokens; the tokenizer keeps '
                f'{max_len}, the rest is truncated',
                logger='current',
                level=30)
        return self.tokenize_truncated(tokenizer, texts).to(self.device)

    @staticmethod
    def tokenize_truncated(tokenizer, texts: List[str]) -> torch.Tensor:
        return tokenizer(
            texts, padding='max_length', max_length=tokenizer.model_max_length,
            truncation=True, return_tensors='pt').input_ids

    def encode_prompt(self, texts: List[str], inputs: Optional[Dict] = None):
        """Return (encoder_hidden_states, added_cond_kwargs)."""
        ids = self.tokenize(self.tokenizer, texts)
        return self.text_encoder(ids)[0], {}

    def encode_images(self, img: torch.Tensor,
                      generator=None) -> torch.Tensor:
        # The VAE runs outside autocast in its own (fp32) dtype: SD VAEs
        # overflow in fp16.
        with torch.autocast(device_type=img.device.type, enabled=False):
            latents = self.vae.encode(img.to(
                self.vae.dtype)).latent_dist.sample(generator)
        return self.scale_latents(latents)

    def scale_latents(self, latents: torch.Tensor) -> torch.Tensor:
        shift = getattr(self.vae.config, 'shift_factor', None) or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    def cached_prompt(self, inputs: Dict):
        """(encoder_hidden_states, added_cond_kwargs) from a latent
        cache's stored embeddings."""
        return inputs['prompt_embeds'], {}

    def forward(self, inputs: Dict, data_samples=None, mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            sampling = dict(inputs.get('sampling') or {})
            if sampling.pop('teacher', False):
                raise ValueError(
                    f'sampling with teacher=True needs a DiffusionDistiller; '
                    f'{type(self).__name__} has no teacher')
            return self.predict(list(inputs['text']), inputs.get('seed'),
                                inputs.get('index'), **sampling)
        raise ValueError(f'unsupported mode {mode!r}; use loss or predict')

    # ------------------------------------------------------------ sampling
    #: ``(scheduler class, config)`` to sample with instead of the
    #: pipeline's own (a consistency-distilled UNet samples with
    #: ``LCMScheduler``); None: the pipeline's saved scheduler.
    sampling_scheduler_override = None

    def sampling_scheduler(self):
        """The scheduler samples are drawn with: the override, else the
        class the base pipeline (or the ``scheduler`` component) names in
        its config, as diffusers samples with it."""
        if self.sampling_scheduler_override is not None:
            cls, config = self.sampling_scheduler_override
            return cls.from_config(config)
        spec = normalized_spec(
            self.component_sources.get('scheduler'), self.model, 'scheduler')
        name, sub = spec.pop('name_or_path'), spec.pop('subfolder')
        return load_scheduler(name, sub, **spec)

    def pipeline(self, unet: Optional[nn.Module] = None):
        """A diffusers pipeline sharing this model's modules (no copies)."""
        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=unet if unet is not None else self.unet,
            scheduler=self.sampling_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False)
