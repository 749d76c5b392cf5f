"""Latent consistency distillation (LCM, Luo et al. 2023; LCM-LoRA).

A few-step student is distilled from a teacher UNet (any pipeline's UNet,
a distilled student included) along the teacher's probability-flow ODE.
One step, for a batch of latents ``x0``:

1. draw a solver step ``n`` of the skip-step schedule ``t_n = (n+1) k - 1``
   (``k = T // num_ddim_timesteps``) and a guidance weight ``w``;
   ``x_t = add_noise(x0, noise, t_n)``;
2. the student's consistency function at ``t_n``:
   ``f(x_t) = c_skip(t_n) x_t + c_out(t_n) x0_pred(student(x_t, t_n, w))``;
3. one DDIM step of the teacher with classifier-free guidance (scale
   ``1 + w``) from ``t_n`` to ``t_n - k``: ``x_prev``;
4. the target's consistency function at ``t_n - k`` on ``x_prev`` (no
   grad); the loss is L2 or pseudo-Huber between the two.

Two outputs, chosen by the student's config:

- a full LCM UNet (no ``lora`` on the student): the student UNet gets
  guidance-scale conditioning (``time_cond_proj_dim``; the projection starts
  at zero, so the student starts as its source UNet); the target network is
  mmengine's ``ExponentialMovingAverage`` of it;
- an LCM-LoRA (``lora=dict(...)`` on the student): peft adapters, no ``w``
  input (sample with a guidance scale of about 1); as in diffusers'
  LCM-LoRA recipe the target is the student itself without grad (an average
  of an adapter would need a second copy of the whole UNet).

Both sample with ``LCMScheduler``, which the export writes beside the UNet
or LoRA (``scheduler/``), and whose boundary scalings the loss uses.
"""
import inspect
import os.path as osp
from typing import Dict, List, Optional

import torch
import torch.nn as nn
from diffusers import (LCMScheduler, StableDiffusionXLPipeline,
                       UNet2DConditionModel)
from mmengine.logging import print_log
from mmengine.model import BaseModel, ExponentialMovingAverage

from diffkd.registry import MODELS
from ..diffusion.loading import load_component
from ..diffusion.components import build_unet
from ..diffusion.frozen import (FrozenChildrenStayInEval,
                               FrozenWeightsOutOfCheckpoints)
from ..diffusion.step import DetachedLogVars
from .distiller import DistillConfigError, _count, _dtype

TARGET = 'target_unet'


def guidance_scale_embedding(w: torch.Tensor, dim: int) -> torch.Tensor:
    """The ``w`` embedding diffusers' pipelines feed to ``timestep_cond``
    (they pass ``guidance_scale - 1``); the method uses no pipeline state."""
    return StableDiffusionXLPipeline.get_guidance_scale_embedding(
        None, w, embedding_dim=dim)


def with_guidance_conditioning(unet: UNet2DConditionModel,
                               dim: int) -> UNet2DConditionModel:
    """A copy of ``unet`` with a ``time_cond_proj_dim=dim`` input, its
    projection zero: it computes exactly what ``unet`` computes."""
    cfg = {k: v for k, v in unet.config.items() if not k.startswith('_')}
    cfg['time_cond_proj_dim'] = dim
    out = UNet2DConditionModel.from_config(cfg)
    result = out.load_state_dict(unet.state_dict(), strict=False)
    if result.unexpected_keys or result.missing_keys != [
            'time_embedding.cond_proj.weight']:
        raise DistillConfigError(
            'adding guidance conditioning changed more than the time '
            f'embedding projection: missing {result.missing_keys}, '
            f'unexpected {result.unexpected_keys}')
    nn.init.zeros_(out.time_embedding.cond_proj.weight)
    dtype = next(unet.parameters()).dtype
    return out if dtype == torch.float32 else out.to(dtype)


@MODELS.register_module()
class LatentConsistencyDistiller(FrozenChildrenStayInEval, DetachedLogVars,
                                 FrozenWeightsOutOfCheckpoints, BaseModel):
    """Latent consistency distillation of a teacher UNet into a few-step
    student (a full LCM UNet or an LCM-LoRA).

    Args:
        student: the student's diffusion wrapper
            (``StableDiffusion``/``StableDiffusionXL``): its text encoders,
            VAE, noise schedule and data path serve the step; its ``unet``
            is where the student starts; ``lora=dict(rank=...)`` makes the
            output an LCM-LoRA.
        teacher: ``dict(model=..., subfolder='unet', dtype=None)``: the
            teacher UNet (it predicts in the student scheduler's
            ``prediction_type``); None: the student's starting UNet.
        num_ddim_timesteps: solver steps over the training schedule (the
            skip is ``num_train_timesteps // num_ddim_timesteps``); written
            as ``original_inference_steps`` of the exported LCMScheduler.
        w_min / w_max: range of the guidance weight ``w`` drawn per sample;
            the teacher's CFG scale is ``1 + w``, and a full LCM UNet samples
            at ``guidance_scale = 1 + w``.
        time_cond_proj_dim: width of the full LCM UNet's ``w`` embedding
            (not with ``lora``).
        target_momentum: the target network's EMA momentum (mmengine's
            convention: ``target = (1 - m) target + m student``; diffusers'
            ``ema_decay`` 0.95 is 0.05). Full UNet only.
        loss: ``PseudoHuberLoss`` (default, ``c=0.001``) or ``L2Loss``.
        timestep_scaling: LCMScheduler's boundary-condition scaling.
    """

    def __init__(self,
                 student: dict,
                 teacher: Optional[dict] = None,
                 num_ddim_timesteps: int = 50,
                 w_min: float = 3.0,
                 w_max: float = 15.0,
                 time_cond_proj_dim: Optional[int] = 256,
                 target_momentum: float = 0.05,
                 loss: Optional[dict] = None,
                 timestep_scaling: float = 10.0,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            data_preprocessor=data_preprocessor
            or dict(type='DiffusionDataPreprocessor'),
            init_cfg=init_cfg)
        student = dict(student)
        if not 0 <= w_min <= w_max:
            raise DistillConfigError(
                f'need 0 <= w_min <= w_max, got w_min={w_min}, '
                f'w_max={w_max}')
        if not 0 < target_momentum <= 1:
            raise DistillConfigError(
                f'target_momentum must be in (0, 1], got {target_momentum}')
        self.is_lora = bool(student.get('lora'))
        if self.is_lora:
            time_cond_proj_dim = None  # an adapter cannot add an input
        self.w_min, self.w_max = float(w_min), float(w_max)

        # Teacher: frozen, eval mode, optionally in a lower precision.
        if teacher is None:
            self.teacher = build_unet(student.get('unet'), student['model'])
            self.teacher_source = student.get('unet') or student['model']
            self.teacher_dtype = None
        else:
            teacher = dict(teacher)
            self.teacher_source = teacher.pop('model')
            self.teacher_dtype = _dtype(teacher.pop('dtype', None))
            if self.teacher_dtype is not None:
                teacher.setdefault('torch_dtype', self.teacher_dtype)
            self.teacher = load_component(
                UNet2DConditionModel, self.teacher_source,
                teacher.pop('subfolder', 'unet'), **teacher)
        self.teacher.requires_grad_(False).eval()

        # Student: a full LCM UNet gains the w input before the wrapper
        # (and its speed switches, gradient checkpointing) takes it.
        if not self.is_lora and time_cond_proj_dim:
            unet = build_unet(student.get('unet'), student['model'])
            if unet.config.time_cond_proj_dim is None:
                unet = with_guidance_conditioning(unet, time_cond_proj_dim)
            elif unet.config.time_cond_proj_dim != time_cond_proj_dim:
                raise DistillConfigError(
                    f'the student UNet already has time_cond_proj_dim='
                    f'{unet.config.time_cond_proj_dim}; set '
                    f'time_cond_proj_dim={unet.config.time_cond_proj_dim}')
            student_source = student.get('unet')
            student['unet'] = unet
        self.student = MODELS.build(student)
        if not self.is_lora and time_cond_proj_dim:
            # Exports still name the UNet the student started from.
            self.student.unet_source = student_source \
                if isinstance(student_source, (str, dict)) else None
        self.time_cond_proj_dim = self.student.unet.config.time_cond_proj_dim
        self._check_teacher_output()

        sched = self.student.noise_scheduler
        known = inspect.signature(LCMScheduler.__init__).parameters
        self.lcm_scheduler = LCMScheduler.from_config(
            {k: v for k, v in sched.config.items() if k in known},
            original_inference_steps=num_ddim_timesteps,
            timestep_scaling=timestep_scaling)
        train_steps = sched.config.num_train_timesteps
        if not 1 <= num_ddim_timesteps <= train_steps:
            raise DistillConfigError(
                f'num_ddim_timesteps must be in [1, {train_steps}], got '
                f'{num_ddim_timesteps}')
        self.skip = train_steps // num_ddim_timesteps
        # The skip-step schedule LCMScheduler samples from.
        self.register_buffer(
            'solver_timesteps',
            torch.arange(1, num_ddim_timesteps + 1) * self.skip - 1,
            persistent=False)
        self.register_buffer(
            'alphas_cumprod',
            self.lcm_scheduler.alphas_cumprod.clone().float(),
            persistent=False)
        if self.student.prediction_type == 'epsilon' and \
                float(self.alphas_cumprod[self.solver_timesteps].min()) == 0:
            raise DistillConfigError(
                'epsilon prediction on a zero-terminal-SNR schedule cannot '
                'recover x0 at the last timestep; use v_prediction')
        self.student.sampling_scheduler_override = (
            LCMScheduler, dict(self.lcm_scheduler.config))

        if self.is_lora:
            self.target_momentum = None
        else:
            self.target_momentum = target_momentum
            self.add_module(TARGET, ExponentialMovingAverage(
                self.student.unet, momentum=target_momentum))
        self.loss_module = MODELS.build(loss or dict(type='PseudoHuberLoss'))
        self._init_checkpoint_filter()
        kind = 'LCM-LoRA' if self.is_lora else \
            f'LCM UNet (time_cond_proj_dim={self.time_cond_proj_dim})'
        print_log(
            f'consistency distillation: teacher {self.teacher_source} '
            f'({_count(self.teacher) / 1e6:.2f}M params) -> {kind}, '
            f'{num_ddim_timesteps} solver steps (skip {self.skip}), '
            f'w in [{self.w_min}, {self.w_max}]', logger='current')

    def _check_teacher_output(self):
        t_out = self.teacher.config.out_channels
        s_out = self.student.unet.config.out_channels
        if t_out != s_out:
            raise DistillConfigError(
                f'teacher UNet {self.teacher_source} predicts {t_out} '
                f'channels, the student {s_out}')

    # ------------------------------------------------------- checkpoints
    # The target network is frozen but is training state: it stays in
    # checkpoints (the teacher, VAE and text encoders do not).
    @staticmethod
    def _drop_frozen(module, state_dict, prefix, local_metadata):
        start = f'{prefix}{TARGET}.'
        kept = {k: v for k, v in state_dict.items() if k.startswith(start)}
        FrozenWeightsOutOfCheckpoints._drop_frozen(module, state_dict, prefix,
                                                   local_metadata)
        state_dict.update(kept)
        return state_dict

    @staticmethod
    def _ignore_frozen_missing(module, incompatible_keys):
        missing = [k for k in incompatible_keys.missing_keys
                   if k.startswith(f'{TARGET}.')]
        FrozenWeightsOutOfCheckpoints._ignore_frozen_missing(
            module, incompatible_keys)
        incompatible_keys.missing_keys.extend(missing)

    # ----------------------------------------------------------- the ODE
    def _alpha(self, t: torch.Tensor, like: torch.Tensor):
        a = self.alphas_cumprod[t].to(like).view(-1, *[1] * (like.ndim - 1))
        return a.sqrt(), (1 - a).sqrt()

    def x0_and_eps(self, out: torch.Tensor, x: torch.Tensor,
                   t: torch.Tensor):
        """A UNet output at ``(x, t)`` as predicted clean latents and
        noise."""
        out = out.float()
        a, s = self._alpha(t, x)
        kind = self.student.prediction_type
        if kind == 'epsilon':
            return (x - s * out) / a, out
        if kind == 'v_prediction':
            return a * x - s * out, a * out + s * x
        raise DistillConfigError(
            f'consistency distillation supports epsilon and v_prediction, '
            f'not {kind!r}')

    def consistency(self, out: torch.Tensor, x: torch.Tensor,
                    t: torch.Tensor) -> torch.Tensor:
        """``c_skip(t) x + c_out(t) x0_pred``: the consistency function
        LCMScheduler samples with."""
        c_skip, c_out = self.lcm_scheduler.\
            get_scalings_for_boundary_condition_discrete(t.float())
        shape = (-1, *[1] * (x.ndim - 1))
        x0, _ = self.x0_and_eps(out, x, t)
        return c_skip.to(x).view(shape) * x + c_out.to(x).view(shape) * x0

    def ddim_step(self, x0: torch.Tensor, eps: torch.Tensor,
                  t_prev: torch.Tensor) -> torch.Tensor:
        a, s = self._alpha(t_prev, x0)
        return a * x0 + s * eps

    @staticmethod
    def _run(unet, x, t, hidden, added, cond=None) -> torch.Tensor:
        p = next(unet.parameters())
        kwargs = {}
        if added:
            # SDXL time ids and pooled embeds stay fp32 (see
            # DiffusionDistiller._teacher_forward).
            kwargs['added_cond_kwargs'] = added
        if cond is not None and unet.config.time_cond_proj_dim:
            kwargs['timestep_cond'] = cond.to(p.dtype)
        return unet(x.to(p.dtype), t, hidden.to(p.dtype), **kwargs).sample

    # ----------------------------------------------------------- training
    def loss(self, inputs: Dict) -> Dict[str, torch.Tensor]:
        st = self.student
        target_net = getattr(self, TARGET, None)
        if self.training and target_net is not None:
            # The previous step's weights enter the average before this
            # step uses it: the same order as updating after the optimizer
            # step, with no hook needed, under DDP too, and exact on resume
            # (the checkpoint holds the weights not yet averaged in).
            target_net.update_parameters(st.unet)
        device = st.device
        n = self._batch_size(inputs)
        index = torch.randint(0, len(self.solver_timesteps), (n, ),
                              device='cpu').to(device)
        t = self.solver_timesteps.to(device)[index]
        t_prev = (t - self.skip).clamp_min(0)
        batch = st.prepare(dict(inputs, timesteps=t))
        x_t = batch.noisy_latents
        w = self.w_min + (self.w_max - self.w_min) * torch.rand(
            n, device='cpu')
        w = w.to(device)
        cond = None
        if self.time_cond_proj_dim:
            cond = guidance_scale_embedding(w, self.time_cond_proj_dim).to(
                device)
        hidden, added = batch.encoder_hidden_states, batch.added_cond_kwargs

        pred = self.consistency(
            self._run(st.unet, x_t, t, hidden, added, cond), x_t, t)
        with torch.no_grad():
            x_prev = self.solver_step(x_t, t, t_prev, w, inputs, hidden,
                                      added, n)
            if target_net is not None:
                target_net.module.eval()
                tgt = target_net.module
            else:
                tgt = st.unet
            target = self.consistency(
                self._run(tgt, x_prev, t_prev, hidden, added, cond), x_prev,
                t_prev)
        return {'loss': self.loss_module(pred.float(), target.float())}

    @staticmethod
    def _batch_size(inputs: Dict) -> int:
        for key in ('img', 'latent_mean', 'prompt_embeds'):
            if key in inputs:
                return inputs[key].shape[0]
        return len(inputs['text'])

    def solver_step(self, x_t, t, t_prev, w, inputs, hidden, added, n):
        """One DDIM step of the teacher with CFG scale ``1 + w`` from ``t``
        to ``t_prev``."""
        # The unconditional input as the student's pipeline builds it (SDXL:
        # zeros), with the batch's own time ids.
        un_hidden, un_added = self.student.encode_prompt([''] * n, inputs)
        self.teacher.eval()
        both = self._run(
            self.teacher, torch.cat([x_t, x_t]), torch.cat([t, t]),
            torch.cat([hidden, un_hidden.to(hidden.dtype)]),
            {k: torch.cat([v, un_added[k].to(v)]) for k, v in added.items()})
        x0, eps = self.x0_and_eps(both, torch.cat([x_t, x_t]),
                                  torch.cat([t, t]))
        shape = (-1, *[1] * (x_t.ndim - 1))
        w = w.to(x0).view(shape)
        x0_c, x0_u = x0.chunk(2)
        eps_c, eps_u = eps.chunk(2)
        return self.ddim_step(x0_c + w * (x0_c - x0_u),
                              eps_c + w * (eps_c - eps_u), t_prev)

    def forward(self, inputs: Dict, data_samples=None, mode: str = 'loss'):
        if mode == 'loss':
            return self.loss(inputs)
        if mode == 'predict':
            return self.student(inputs, data_samples, mode='predict')
        raise ValueError(f'unsupported mode {mode!r}; use loss or predict')

    # ------------------------------------------------- export / sampling
    @property
    def pipeline_class_name(self) -> str:
        return self.student.pipeline_class_name

    def export_pretrained(self, out_dir: str) -> Dict:
        """The student's export (``unet/`` or ``lora/``) and the
        ``LCMScheduler`` to sample it with (``scheduler/``)."""
        info = self.student.export_pretrained(out_dir)
        self.lcm_scheduler.save_pretrained(osp.join(out_dir, 'scheduler'))
        info['parts'] = list(info['parts']) + ['scheduler']
        info['teacher'] = self.teacher_source if isinstance(
            self.teacher_source, str) else repr(self.teacher_source)
        return info

    def generate(self, prompts: List[str], **kwargs):
        return self.student.generate(prompts, **kwargs)
