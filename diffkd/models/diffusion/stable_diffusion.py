"""Stable Diffusion 1.x/2.x wrapper: one training step of latent diffusion.

The step is split into stages that the distiller reuses unchanged:
``prepare`` (encode image and prompt, draw noise and timesteps) ->
``run_unet`` (any UNet on the prepared batch) -> ``task_loss``.
"""
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Union

import diffusers
import numpy as np
import torch
import torch.nn as nn
from diffusers import (AutoencoderKL, DDPMScheduler, StableDiffusionPipeline,
                       UNet2DConditionModel)
from mmengine.logging import print_log
from mmengine.model import BaseModel
from transformers import CLIPTextModel, CLIPTokenizer

from diffkd.registry import MODELS
from diffkd.utils.hub import resolve_model_path
from ..losses import compute_snr
from .loading import load_component
from .speed import configure_unet, speed_options


@dataclass
class DiffusionBatch:
    """Everything a UNet forward and a loss need for one step."""
    noisy_latents: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor
    encoder_hidden_states: torch.Tensor
    added_cond_kwargs: Dict[str, torch.Tensor] = field(default_factory=dict)
    snr: Optional[torch.Tensor] = None

    def rows(self, mask: torch.Tensor) -> 'DiffusionBatch':
        """The batch restricted to the rows where ``mask`` is True."""
        return DiffusionBatch(
            self.noisy_latents[mask], self.timesteps[mask], self.target[mask],
            self.encoder_hidden_states[mask],
            {k: v[mask] for k, v in self.added_cond_kwargs.items()},
            None if self.snr is None else self.snr[mask])


def load_scheduler(name_or_path: str, subfolder: str = 'scheduler'):
    """Instantiate the scheduler class named in the saved config (the one
    ``DiffusionPipeline.from_pretrained`` would use for sampling)."""
    scheduler = load_component(DDPMScheduler, name_or_path, subfolder)
    # from_pretrained stamps its own class name on the config: read the
    # saved one from the raw file.
    saved = DDPMScheduler.load_config(
        resolve_model_path(name_or_path), subfolder=subfolder)
    cls = getattr(diffusers, saved.get('_class_name', 'DDPMScheduler'),
                  DDPMScheduler)
    return cls.from_config(scheduler.config)


def build_unet(unet: Union[None, str, dict, nn.Module],
               model: str) -> UNet2DConditionModel:
    """A UNet from: None (the pipeline's own), a path/hub id, a dict
    ``dict(name_or_path=..., subfolder=...)``, or a ready module."""
    if isinstance(unet, nn.Module):
        return unet
    if unet is None:
        return load_component(UNet2DConditionModel, model, 'unet')
    if isinstance(unet, str):
        return load_component(UNet2DConditionModel, unet)
    if isinstance(unet, dict):
        unet = dict(unet)
        name = unet.pop('name_or_path', model)
        return load_component(UNet2DConditionModel, name,
                              unet.pop('subfolder', None), **unet)
    raise TypeError(f'unet must be None, a path, a dict or a module, got '
                    f'{type(unet).__name__}')


def _frozen_children(module: nn.Module) -> List[str]:
    """Children that hold parameters, none of which is trainable."""
    names = []
    for name, child in module.named_children():
        params = list(child.parameters())
        if params and not any(p.requires_grad for p in params):
            names.append(name)
    return names


class FrozenChildrenStayInEval:
    """Mixin: ``train()`` switches only the children that train.

    Frozen components (VAE, text encoders, a teacher) stay in inference
    mode and are not walked again: mmengine's train loop calls
    ``model.train()`` every iteration, and walking the thousands of modules
    of a teacher and its encoders each time cost about 30 ms a step on the
    toy SDXL distiller (``benchmark_train.py``), more than the optimizer.
    Which children are frozen is decided at the first call, after the model
    is built (``requires_grad`` is set in the constructors). A child already
    in the requested mode is not walked either: mode changes go through the
    model (``model.train()`` / ``model.eval()``), which keeps every
    submodule's flag equal to its child's.
    """
    _frozen_for_train: Optional[frozenset] = None

    def train(self, mode: bool = True):
        if self._frozen_for_train is None:
            self._frozen_for_train = frozenset(_frozen_children(self))
            first = True
        else:
            first = False
        self.training = mode
        for name, child in self.named_children():
            want = mode and name not in self._frozen_for_train
            if first or child.training != want:
                child.train(want)
        return self


class DetachedLogVars:
    """Mixin: the logged loss values leave ``train_step`` detached.

    mmengine's ``parse_losses`` logs the loss tensors themselves, so the
    step's autograd graph lived on until every hook had run (1.7 ms a step
    to free on the toy SSD-1B distiller, charged to whatever came next).
    Detached, it is freed as soon as the optimizer has stepped, as in a
    hand-written loop. Hooks only read the values.
    """

    def parse_losses(self, losses):
        loss, log_vars = super().parse_losses(losses)
        return loss, type(log_vars)(
            (k, v.detach() if torch.is_tensor(v) else v)
            for k, v in log_vars.items())


class FrozenWeightsOutOfCheckpoints:
    """Mixin: checkpoints hold only the children that train.

    Frozen components (VAE, text encoders, a teacher) are reloaded from their
    pretrained source when the config is built again, so storing them in
    every checkpoint would only cost disk and time.
    """

    def _init_checkpoint_filter(self):
        self._register_state_dict_hook(self._drop_frozen)
        self.register_load_state_dict_post_hook(self._ignore_frozen_missing)

    @staticmethod
    def _drop_frozen(module, state_dict, prefix, local_metadata):
        for name in _frozen_children(module):
            start = f'{prefix}{name}.'
            for key in [k for k in state_dict if k.startswith(start)]:
                del state_dict[key]
        return state_dict

    @staticmethod
    def _ignore_frozen_missing(module, incompatible_keys):
        frozen = tuple(f'{n}.' for n in _frozen_children(module))
        missing = incompatible_keys.missing_keys
        missing[:] = [k for k in missing if not k.startswith(frozen)]


@MODELS.register_module()
class StableDiffusion(FrozenChildrenStayInEval, DetachedLogVars,
                      FrozenWeightsOutOfCheckpoints, BaseModel):
    """Text-to-image latent diffusion with a trainable UNet (SD 1.x/2.x).

    Args:
        model: hub id or local folder of a diffusers pipeline.
        unet: where the trained UNet comes from (see :func:`build_unet`).
        loss: task loss config (``L2Loss``, ``SNRL2Loss``).
        prediction_type: ``'epsilon'`` or ``'v_prediction'``; default is
            the scheduler's.
        noise_offset: std of a per-channel constant added to the noise.
        finetune_text_encoder: train the text encoder(s) too.
        gradient_checkpointing: trade compute for memory in the UNet.
        lora: train LoRA adapters instead of full weights:
            ``dict(rank=8, alpha=8, dropout=0.0, target_modules=None,
            text_encoder=False)``; exports go to ``lora/``.
        prior_loss_weight: weight of the class rows' loss when a batch
            carries ``is_prior`` (DreamBooth prior preservation).
        attention / channels_last / compile: speed switches for the UNet
            (see :mod:`.speed`); a distiller applies them to its teacher too.
    """
    text_encoder_names = ('text_encoder', )

    def __init__(self,
                 model: str,
                 unet: Union[None, str, dict, nn.Module] = None,
                 loss: Optional[dict] = None,
                 prediction_type: Optional[str] = None,
                 noise_offset: float = 0.0,
                 finetune_text_encoder: bool = False,
                 gradient_checkpointing: bool = False,
                 lora: Optional[dict] = None,
                 prior_loss_weight: float = 1.0,
                 attention: Optional[str] = None,
                 channels_last: bool = False,
                 compile: Union[bool, dict, None] = None,
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
        self.load_text_components(model)
        self.vae = load_component(AutoencoderKL, model, 'vae')
        self.noise_scheduler = load_component(DDPMScheduler, model,
                                              'scheduler')
        if prediction_type is not None:
            if prediction_type not in ('epsilon', 'v_prediction'):
                raise ValueError(f'prediction_type must be epsilon or '
                                 f'v_prediction, got {prediction_type!r}')
            self.noise_scheduler.register_to_config(
                prediction_type=prediction_type)
        self.unet = build_unet(unet, model)
        # A UNet from elsewhere (e.g. a distilled student) is recorded so
        # that exports can rebuild the pipeline around it.
        self.unet_source = unet if isinstance(unet, (str, dict)) else None
        self.loss_module = MODELS.build(loss or dict(type='L2Loss'))

        self.vae.requires_grad_(False)
        for name in self.text_encoder_names:
            getattr(self, name).requires_grad_(finetune_text_encoder)
        self.lora = dict(lora) if lora else None
        if self.lora:
            self._add_lora(self.lora)
        if gradient_checkpointing:
            self.unet.enable_gradient_checkpointing()
            if finetune_text_encoder:
                for name in self.text_encoder_names:
                    getattr(self, name).gradient_checkpointing_enable()
        self.unet_speed = speed_options(attention, channels_last, compile)
        configure_unet(self.unet, **self.unet_speed)
        self._warned_truncation = False
        self._init_checkpoint_filter()

    def _add_lora(self, cfg: Dict):
        from ..lora import TEXT_ENCODER_TARGETS, add_lora
        unknown = set(cfg) - {'rank', 'alpha', 'dropout', 'target_modules',
                              'text_encoder', 'text_encoder_targets'}
        if unknown:
            raise ValueError(f'unknown lora keys {sorted(unknown)}')
        common = dict(rank=cfg.get('rank', 8), alpha=cfg.get('alpha'),
                      dropout=cfg.get('dropout', 0.0))
        add_lora(self.unet, target_modules=cfg.get('target_modules'),
                 **common)
        if cfg.get('text_encoder'):
            self.finetune_text_encoder = True  # prompts encoded with grad
            for name in self.text_encoder_names:
                add_lora(getattr(self, name),
                         target_modules=cfg.get('text_encoder_targets'),
                         default_targets=TEXT_ENCODER_TARGETS, **common)

    # ------------------------------------------------------------ components
    def load_text_components(self, model: str):
        self.tokenizer = load_component(CLIPTokenizer, model, 'tokenizer')
        self.text_encoder = load_component(CLIPTextModel, model,
                                           'text_encoder')

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

    def encode_images(self, img: torch.Tensor) -> torch.Tensor:
        # The VAE runs outside autocast in its own (fp32) dtype: SD VAEs
        # overflow in fp16.
        with torch.autocast(device_type=img.device.type, enabled=False):
            latents = self.vae.encode(img.to(
                self.vae.dtype)).latent_dist.sample()
        return self.scale_latents(latents)

    def scale_latents(self, latents: torch.Tensor) -> torch.Tensor:
        shift = getattr(self.vae.config, 'shift_factor', None) or 0.0
        return (latents - shift) * self.vae.config.scaling_factor

    def cached_prompt(self, inputs: Dict):
        """(encoder_hidden_states, added_cond_kwargs) from a latent
        cache's stored embeddings."""
        return inputs['prompt_embeds'], {}

    # ---------------------------------------------------------------- step
    def prepare(self, inputs: Dict) -> DiffusionBatch:
        """Encode, noise and condition one batch (no UNet involved)."""
        if 'latent_mean' in inputs:  # a latent cache: draw from the stored
            mean = inputs['latent_mean'].float()  # distribution, as the
            std = inputs['latent_std'].float()  # VAE's sample() does
            latents = self.scale_latents(mean + std * torch.randn_like(mean))
        else:
            with torch.no_grad():
                latents = self.encode_images(inputs['img'])
        noise = torch.randn_like(latents)
        if self.noise_offset:
            noise = noise + self.noise_offset * torch.randn(
                latents.shape[0], latents.shape[1], 1, 1,
                device=latents.device, dtype=latents.dtype)
        timesteps = inputs.get('timesteps')
        if timesteps is None:
            timesteps = torch.randint(
                0,
                self.noise_scheduler.config.num_train_timesteps,
                (latents.shape[0], ),
                device=latents.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        if self.prediction_type == 'epsilon':
            target = noise
        elif self.prediction_type == 'v_prediction':
            target = self.noise_scheduler.get_velocity(
                latents, noise, timesteps)
        else:
            raise ValueError(
                f'unsupported prediction_type {self.prediction_type!r}')
        if 'prompt_embeds' in inputs:
            if self.finetune_text_encoder:
                raise ValueError(
                    'cached text embeddings cannot train a text encoder: '
                    'use a dataset without a latent cache, or freeze the '
                    'text encoders')
            hidden, added = self.cached_prompt(inputs)
        else:
            grad = torch.enable_grad() if self.finetune_text_encoder \
                else torch.no_grad()
            with grad:
                hidden, added = self.encode_prompt(list(inputs['text']),
                                                   inputs)
        snr = compute_snr(self.noise_scheduler.alphas_cumprod, timesteps)
        return DiffusionBatch(noisy, timesteps, target, hidden, added, snr)

    @staticmethod
    def run_unet(unet: nn.Module, batch: DiffusionBatch) -> torch.Tensor:
        kwargs = {}
        if batch.added_cond_kwargs:
            kwargs['added_cond_kwargs'] = batch.added_cond_kwargs
        return unet(batch.noisy_latents, batch.timesteps,
                    batch.encoder_hidden_states, **kwargs).sample

    def score(self, pred: torch.Tensor, target: torch.Tensor,
              batch: DiffusionBatch, loss_module: nn.Module) -> torch.Tensor:
        return loss_module(
            pred, target, snr=batch.snr, prediction_type=self.prediction_type)

    def loss(self, inputs: Dict) -> Dict[str, torch.Tensor]:
        batch = self.prepare(inputs)
        pred = self.run_unet(self.unet, batch)
        return self.task_losses(pred, batch, inputs.get('is_prior'),
                                self.loss_module)

    def task_losses(self, pred: torch.Tensor, batch: DiffusionBatch,
                    is_prior: Optional[torch.Tensor],
                    loss_module: nn.Module) -> Dict[str, torch.Tensor]:
        """``{'loss': ...}``, or with DreamBooth class rows (``is_prior``)
        ``{'loss_instance': ..., 'loss_prior': prior_loss_weight * ...}``."""
        if is_prior is None or not bool(is_prior.any()):
            return {'loss': self.score(pred, batch.target, batch,
                                       loss_module)}
        # Prior preservation: instance and class rows share the forward
        # pass (one timestep and prompt per row) and are scored apart.
        is_prior = is_prior.to(pred.device, torch.bool)
        losses = {}
        for name, rows, weight in (('loss_instance', ~is_prior, 1.0),
                                   ('loss_prior', is_prior,
                                    self.prior_loss_weight)):
            losses[name] = weight * self.score(
                pred[rows], batch.target[rows], batch.rows(rows),
                loss_module)
        return losses

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
        cfg = self.vae.config
        p = next(self.vae.parameters())
        lat = latents.to(p.device, p.dtype)
        mean = getattr(cfg, 'latents_mean', None)
        std = getattr(cfg, 'latents_std', None)
        if mean is not None and std is not None:
            mean = torch.tensor(mean).view(1, -1, 1, 1).to(lat)
            std = torch.tensor(std).view(1, -1, 1, 1).to(lat)
            lat = lat * std / cfg.scaling_factor + mean
        else:
            lat = lat / cfg.scaling_factor
        img = (self.vae.decode(lat).sample / 2 + 0.5).clamp(0, 1)
        img = img.permute(0, 2, 3, 1).float().cpu().numpy()
        return (img * 255).round().astype(np.uint8)

    # ------------------------------------------------------------- export
    pipeline_class_name = 'StableDiffusionPipeline'

    def export_pretrained(self, out_dir: str) -> Dict:
        """Write the trained UNet as a diffusers folder ``out_dir/unet``, or
        the LoRA as ``out_dir/lora/pytorch_lora_weights.safetensors``.

        Returns what a loader needs to rebuild the pipeline around it.
        """
        info = dict(base_model=self.model)
        if isinstance(self.unet_source, str):
            info['base_unet'] = self.unet_source
        if self.lora:
            import diffusers

            from ..lora import save_lora
            save_lora(
                getattr(diffusers, self.pipeline_class_name),
                osp.join(out_dir, 'lora'), self.unet,
                {n: getattr(self, n) for n in self.text_encoder_names})
            info['parts'] = ['lora']
            return info
        self.unet.save_pretrained(
            osp.join(out_dir, 'unet'), safe_serialization=True)
        info['parts'] = ['unet']
        return info

    # ------------------------------------------------------------ sampling
    #: ``(scheduler class, config)`` to sample with instead of the
    #: pipeline's own (a consistency-distilled UNet samples with
    #: ``LCMScheduler``); None: the pipeline's saved scheduler.
    sampling_scheduler = None

    def scheduler_for_sampling(self):
        if self.sampling_scheduler is not None:
            cls, config = self.sampling_scheduler
            return cls.from_config(config)
        return load_scheduler(self.model)

    def pipeline(self, unet: Optional[nn.Module] = None):
        """A diffusers pipeline sharing this model's modules (no copies)."""
        return StableDiffusionPipeline(
            vae=self.vae,
            text_encoder=self.text_encoder,
            tokenizer=self.tokenizer,
            unet=unet if unet is not None else self.unet,
            scheduler=self.scheduler_for_sampling(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False)

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
