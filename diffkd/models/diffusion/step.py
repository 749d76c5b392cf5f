"""One training step of latent diffusion, in stages that the distiller
reuses unchanged: ``prepare`` (encode image and prompt, draw noise and
timesteps) -> ``run_unet`` (any UNet on the prepared batch) -> ``score``
(the task loss)."""
from dataclasses import dataclass, field
from typing import Dict, Optional

import torch
import torch.nn as nn
from diffusers.utils.torch_utils import randn_tensor

from ..losses import compute_snr


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


class LatentDiffusionStep:
    """Mixin: the training step of a model with ``vae``, ``noise_scheduler``,
    ``unet``, ``loss_module`` and prompt encoding (``encode_prompt``,
    ``cached_prompt``, ``encode_images``, ``scale_latents``)."""

    def prepare(self, inputs: Dict) -> DiffusionBatch:
        """Encode, noise and condition one batch (no UNet involved).

        ``inputs['generator']``, one generator per sample, makes every
        random draw of a sample its own (held-out losses); without it they
        come from the global generator, as in training.
        """
        gens = inputs.get('generator')

        def randn_like(x, shape=None):
            shape = x.shape if shape is None else shape
            if gens is None:  # training: the global generator
                return torch.randn_like(x) if shape == x.shape else \
                    torch.randn(shape, device=x.device, dtype=x.dtype)
            return randn_tensor(shape, generator=gens, device=x.device,
                                dtype=x.dtype)

        if 'latent_mean' in inputs:  # a latent cache: draw from the stored
            mean = inputs['latent_mean'].float()  # distribution, as the
            std = inputs['latent_std'].float()  # VAE's sample() does
            latents = self.scale_latents(mean + std * randn_like(mean))
        else:
            with torch.no_grad():
                latents = self.encode_images(inputs['img'], generator=gens)
        noise = randn_like(latents)
        if self.noise_offset:
            noise = noise + self.noise_offset * randn_like(
                latents, (latents.shape[0], latents.shape[1], 1, 1))
        timesteps = inputs.get('timesteps')
        steps = self.noise_scheduler.config.num_train_timesteps
        if timesteps is None and gens is None:
            timesteps = torch.randint(
                0, steps, (latents.shape[0], ), device=latents.device)
        elif timesteps is None:
            timesteps = torch.cat([
                torch.randint(0, steps, (1, ), generator=g) for g in gens
            ]).to(latents.device)
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
        dtype = unet.dtype
        if batch.noisy_latents.dtype == dtype:
            return unet(batch.noisy_latents, batch.timesteps,
                        batch.encoder_hidden_states, **kwargs).sample
        # A UNet stored in bf16/fp16: latents and prompt states enter its
        # layers in its dtype (SDXL's time ids and pooled embeds stay fp32:
        # diffusers embeds them in fp32 and casts after); the prediction
        # is scored in fp32.
        return unet(batch.noisy_latents.to(dtype), batch.timesteps,
                    batch.encoder_hidden_states.to(dtype),
                    **kwargs).sample.float()

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
