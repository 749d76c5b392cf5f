"""Test-only pieces loaded into training runs through ``custom_imports``
(``tests.test_reliability.probes``); nothing here ships with diffkd.

* ``SameNoiseSDXL``: every sample's latent, noise and timestep follow from
  the sample itself (not from the global generator, not from its rank or
  batch), so a 2-process run and a 1-process run with the same global batch
  compute the same gradients up to float rounding.
* ``NaNAtIterL2Loss``: an L2 loss that returns NaN at given iterations.
* ``RankProbeHook``: writes what each rank saw (generator state, DDP ignore
  list, initial trainable weights) to ``<work_dir>/probe_rank<r>.json``.
"""
import hashlib
import json
import os.path as osp

import torch
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import MessageHub

from diffkd.models.diffusion.stable_diffusion_xl import StableDiffusionXL
from diffkd.models.losses.l2 import L2Loss
from diffkd.registry import HOOKS, MODELS


@MODELS.register_module(force=True)
class SameNoiseSDXL(StableDiffusionXL):

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # A frozen module whose value differs per rank: DDP must not
        # broadcast it (it is in _ddp_params_and_buffers_to_ignore).
        self.rank_marker = torch.nn.Linear(1, 1, bias=False)
        self.rank_marker.weight.data.fill_(float(get_dist_info()[0]))
        self.rank_marker.requires_grad_(False)

    def encode_images(self, img, generator=None):
        with torch.no_grad():
            mean = self.vae.encode(img.to(self.vae.dtype)).latent_dist.mean
        return self.scale_latents(mean)

    def prepare(self, inputs):
        gens = []
        for img in inputs['img']:
            key = hashlib.sha256(img.float().cpu().numpy().tobytes())
            gens.append(torch.Generator().manual_seed(
                int(key.hexdigest()[:12], 16)))
        steps = self.noise_scheduler.config.num_train_timesteps
        inputs = dict(inputs, timesteps=torch.stack([
            torch.randint(0, steps, (), generator=g) for g in gens
        ]).to(inputs['img'].device))
        real = torch.randn_like

        def per_sample_noise(latents, **kwargs):
            return torch.stack([
                torch.randn(latents.shape[1:], generator=g) for g in gens
            ]).to(latents)

        # prepare() draws its noise with torch.randn_like(latents).
        torch.randn_like = per_sample_noise
        try:
            return super().prepare(inputs)
        finally:
            torch.randn_like = real


@MODELS.register_module(force=True)
class NaNAtIterL2Loss(L2Loss):

    def __init__(self, iters=(), value=float('nan'), **kwargs):
        super().__init__(**kwargs)
        self.iters = set(iters)
        self.value = value

    def forward(self, pred, target, **kwargs):
        loss = super().forward(pred, target, **kwargs)
        it = MessageHub.get_current_instance().get_info('iter', 0) + 1
        return loss * self.value if it in self.iters else loss


def fsdp_flat_params(model):
    """[(requires_grad, [parameter names])] of each FSDP flat parameter."""
    try:
        from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    except ImportError:
        return []
    if not isinstance(model, FSDP):
        return []
    out = []
    for unit in FSDP.fsdp_modules(model):
        handle = getattr(unit, '_handle', None)
        if handle is not None:
            flat = handle.flat_param
            out.append((bool(flat.requires_grad), list(flat._fqns)))
    return out


@HOOKS.register_module(force=True)
class RankProbeHook(Hook):
    priority = 'LOWEST'

    done = False

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.done:  # only the first iteration this process runs
            return
        self.done = True
        rank, world = get_dist_info()
        model = runner.model
        inner = getattr(model, 'module', model)
        ignored = sorted(getattr(model, 'parameters_to_ignore', []))
        names = [n for n, _ in inner.named_parameters()]
        trainable = [n for n, p in inner.named_parameters()
                     if p.requires_grad]
        marker = getattr(inner.student, 'rank_marker', None)
        info = dict(
            rank=rank,
            world=world,
            wrapper=type(model).__name__,
            rank_marker=None if marker is None else float(marker.weight),
            flat_params=fsdp_flat_params(model),
            local_numel={
                part: sum(p.numel() for n, p in inner.named_parameters()
                          if n.replace('_fsdp_wrapped_module.', '')
                          .startswith(part + '.'))
                for part in ('teacher', 'student.unet')},
            rng=hashlib.sha256(
                torch.get_rng_state().numpy().tobytes()).hexdigest(),
            ignored=ignored,
            frozen=[n for n in names if n not in set(trainable)],
            trainable=trainable)
        with open(osp.join(runner.work_dir, f'probe_rank{rank}.json'),
                  'w') as f:
            json.dump(info, f)
        if world == 1:  # the weights training starts from
            unet = inner.student.unet
            torch.save({k: v.detach().clone() for k, v in
                        unet.state_dict().items()},
                       osp.join(runner.work_dir, 'init_unet.pt'))


@HOOKS.register_module(force=True)
class WaitForSignalHook(Hook):
    """After iteration ``at_iter``: write ``<work_dir>/<marker>`` and wait
    (up to ``timeout`` s) until SignalCheckpointHook has received a signal,
    so a test can signal a subprocess at a known iteration."""
    priority = 'VERY_HIGH'  # before SignalCheckpointHook looks

    def __init__(self, at_iter: int, marker: str = 'ready',
                 timeout: float = 120):
        self.at_iter = at_iter
        self.marker = marker
        self.timeout = timeout

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 != self.at_iter:
            return
        import time

        from diffkd.engine.hooks import SignalCheckpointHook
        hook = next(h for h in runner.hooks
                    if isinstance(h, SignalCheckpointHook))
        with open(osp.join(runner.work_dir, self.marker), 'w') as f:
            f.write(str(runner.iter + 1))
        end = time.monotonic() + self.timeout
        while not hook.received and time.monotonic() < end:
            time.sleep(0.05)


@HOOKS.register_module(force=True)
class SelfSignalHook(Hook):
    """Send ``signum`` to this very process after iteration ``at_iter``."""
    priority = 'VERY_HIGH'

    def __init__(self, at_iter: int, signum: int):
        self.at_iter = at_iter
        self.signum = signum

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at_iter:
            import os
            os.kill(os.getpid(), self.signum)
