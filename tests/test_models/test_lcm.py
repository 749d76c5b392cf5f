"""Latent consistency distillation: the loss at its fixed point, the
guidance-conditioned student, and the two outputs loaded by stock diffusers
pipelines with LCMScheduler."""
import os
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from diffusers import (LCMScheduler, StableDiffusionXLPipeline,
                       UNet2DConditionModel)
from mmengine.registry import DefaultScope

from diffkd.engine.hooks.export_hook import export_model
from diffkd.models.distill import DistillConfigError
from diffkd.models.distill.lcm import with_guidance_conditioning
from diffkd.models.losses import PseudoHuberLoss
from diffkd.registry import MODELS
from diffkd.utils.hub import resolve_model_path

PROMPTS = ['a red circle on a blue background',
           'a yellow square on a black background']


@pytest.fixture(scope='module')
def teacher_path(diffkd_home):
    return resolve_model_path('diffkd-toy/sdxl-teacher')


def build(path, **kw):
    student = dict(type='StableDiffusionXL', model=path)
    student.update(kw.pop('student', {}))
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(
            dict(type='LatentConsistencyDistiller', student=student, **kw))


def batch(n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(img=torch.rand(n, 3, 32, 32, generator=g) * 2 - 1,
                text=PROMPTS[:n],
                time_ids=torch.tensor([[32., 32, 0, 0, 32, 32]] * n))


class Oracle(nn.Module):
    """A UNet stand-in that knows the clean latents ``x0`` of the batch.

    ``kind='teacher'``: the exact v-prediction of the one trajectory
    through ``x0`` (so a DDIM step stays on it; conditional and
    unconditional agree, so CFG changes nothing). ``kind='consistency'``:
    the output whose consistency function is that trajectory's end point at
    t=0, the exact solution the student and the target learn.
    """

    def __init__(self, model, x0, kind, error=0.0):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))
        self.config = SimpleNamespace(time_cond_proj_dim=None)
        self.model, self.x0, self.kind, self.error = model, x0, kind, error

    def forward(self, x, t, hidden, **kwargs):
        m = self.model
        acp = m.alphas_cumprod.double()
        a = acp[t].view(-1, 1, 1, 1).sqrt()
        s = (1 - acp[t]).view(-1, 1, 1, 1).sqrt()
        x, x0 = x.double(), self.x0.repeat(len(x) // len(self.x0), 1, 1, 1)
        # a wrong teacher: its x0 off by error * N(0, 1), drawn once
        x0 = x0.double() + self.error * torch.randn(
            x0.shape, generator=torch.Generator().manual_seed(7),
            dtype=torch.float64)
        eps = (x - a * x0) / s
        if self.kind == 'consistency':
            end = acp[0].sqrt() * x0 + (1 - acp[0]).sqrt() * eps
            c_skip, c_out = m.lcm_scheduler.\
                get_scalings_for_boundary_condition_discrete(t.double())
            c_skip = c_skip.view(-1, 1, 1, 1)
            c_out = c_out.view(-1, 1, 1, 1)
            # At t = 0 the boundary condition (c_out = 0) gives x itself.
            x0 = torch.where(c_out > 0, (end - c_skip * x) /
                             c_out.clamp_min(1e-30), x0)
        # the v-prediction whose x0 (a x - s v) is x0 (toy schedules are v)
        return SimpleNamespace(sample=((a * x - x0) / s).float())


@pytest.mark.parametrize('loss', ['L2Loss', 'PseudoHuberLoss'])
def test_loss_vanishes_when_student_is_target_and_solver_exact(
        teacher_path, loss):
    model = build(teacher_path, loss=dict(type=loss))
    model.eval()  # no EMA update: the target stays the oracle below
    assert model.student.prediction_type == 'v_prediction'
    n = 8
    g = torch.Generator().manual_seed(0)
    mean = torch.randn(n, 4, 8, 8, generator=g)
    inputs = dict(latent_mean=mean, latent_std=torch.zeros_like(mean),
                  text=['a red circle on a blue background'] * n,
                  time_ids=torch.tensor([[32., 32, 0, 0, 32, 32]] * n))
    x0 = model.student.scale_latents(mean)
    consistency = Oracle(model, x0, 'consistency')
    model.student.unet = consistency
    model.target_unet.module = consistency  # the student equals the target
    losses = []
    for error in (0.0, 0.5):
        model.teacher = Oracle(model, x0, 'teacher', error=error)
        torch.manual_seed(1)
        losses.append(float(model.loss(inputs)['loss']))
    exact, off = losses
    print(f'{loss}: exact solver {exact:.3g}, wrong teacher {off:.3g}')
    # float32 rounding only (about 1e-15 for L2, 1e-10 for pseudo-Huber's
    # d^2 / 2c), against a teacher whose x0 is off
    assert exact < 1e-8, losses
    assert off > 1e4 * exact, losses


def test_guidance_conditioned_unet_starts_as_its_source(teacher_path):
    unet = UNet2DConditionModel.from_pretrained(teacher_path,
                                                subfolder='unet')
    lcm = with_guidance_conditioning(unet, 32)
    assert lcm.config.time_cond_proj_dim == 32
    assert unet.config.time_cond_proj_dim is None
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=g)
    hidden = torch.randn(2, 5, 64, generator=g)
    added = dict(text_embeds=torch.randn(2, 32, generator=g),
                 time_ids=torch.tensor([[32., 32, 0, 0, 32, 32]] * 2))
    with torch.no_grad():
        ref = unet(x, torch.tensor([500, 20]), hidden,
                   added_cond_kwargs=added).sample
        out = lcm(x, torch.tensor([500, 20]), hidden,
                  added_cond_kwargs=added,
                  timestep_cond=torch.randn(2, 32, generator=g)).sample
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


def test_config_errors_name_the_setting(teacher_path):
    with pytest.raises(DistillConfigError, match='use v_prediction'):
        build(teacher_path, student=dict(prediction_type='epsilon'))
    with pytest.raises(DistillConfigError, match='w_min <= w_max'):
        build(teacher_path, w_min=5.0, w_max=2.0)
    with pytest.raises(DistillConfigError, match=r'num_ddim_timesteps must '
                       r'be in \[1, 1000\]'):
        build(teacher_path, num_ddim_timesteps=0)


def test_pseudo_huber_values():
    loss = PseudoHuberLoss(c=0.4)
    zero = torch.zeros(2, 3)
    # sqrt(0.3^2 + 0.4^2) - 0.4 = 0.1; far out it grows like |d| - c
    torch.testing.assert_close(loss(torch.full((2, 3), 0.3), zero),
                               torch.tensor(0.1))
    torch.testing.assert_close(loss(torch.full((2, 3), -1e3), zero),
                               torch.tensor(1e3 - 0.4), rtol=1e-6, atol=0)
    assert float(loss(zero, zero)) == 0
    with pytest.raises(ValueError, match='c > 0'):
        PseudoHuberLoss(c=0)


def train_steps(model, steps=2, lr=1e-2):
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    model.train()
    for i in range(steps):
        torch.manual_seed(i)
        data = model.data_preprocessor(dict(inputs=batch()), True)
        loss = model(**data, mode='loss')['loss']
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def stock_latents(pipe, steps, scale):
    pipe.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(s) for s in range(len(PROMPTS))]
    return pipe(PROMPTS, num_inference_steps=steps, guidance_scale=scale,
                generator=gens, output_type='latent').images


def test_lcm_unet_loads_into_stock_pipeline_and_samples_the_same(
        teacher_path, tmp_path):
    model = build(teacher_path, w_min=2.0, w_max=5.0, time_cond_proj_dim=32)
    train_steps(model)
    cond = model.student.unet.time_embedding.cond_proj.weight
    assert cond.abs().sum() > 0, 'the w projection did not train'
    # the target moved toward the student, but not all the way
    student = dict(model.student.unet.named_parameters())
    target = dict(model.target_unet.module.named_parameters())
    assert not torch.equal(target['conv_in.weight'],
                           student['conv_in.weight'])
    out = tmp_path / 'export'
    export_model(model, str(out), step=2)
    mine = torch.stack(model.generate(
        PROMPTS, seeds=[0, 1], num_inference_steps=4, guidance_scale=4.0,
        output_type='latent'))
    pipe = StableDiffusionXLPipeline.from_pretrained(
        teacher_path,
        unet=UNet2DConditionModel.from_pretrained(out / 'unet'),
        scheduler=LCMScheduler.from_pretrained(out / 'scheduler'))
    assert pipe.unet.config.time_cond_proj_dim == 32
    assert pipe.scheduler.config.original_inference_steps == 50
    torch.testing.assert_close(stock_latents(pipe, 4, 4.0), mine, rtol=0,
                               atol=1e-5)
    # tools/infer.py's loader takes the exported scheduler too
    from diffkd.apis import load_pipeline
    assert isinstance(load_pipeline(str(out)).scheduler, LCMScheduler)


@pytest.fixture(scope='module')
def ssd_1b_student(teacher_path, tmp_path_factory):
    """A toy SSD-1B student UNet (the SSD1B recipe, teacher-initialised)."""
    from diffkd.models.compression import build_compression, \
        init_from_teacher
    teacher = UNet2DConditionModel.from_pretrained(teacher_path,
                                                   subfolder='unet')
    result = build_compression(dict(type='SSD1B'))(dict(teacher.config))
    unet = UNet2DConditionModel.from_config(result.student_config)
    init_from_teacher(unet, teacher, result.module_map)
    path = str(tmp_path_factory.mktemp('ssd_1b') / 'unet')
    unet.save_pretrained(path)
    return path


def test_lcm_lora_loads_into_stock_pipeline_and_samples_the_same(
        teacher_path, ssd_1b_student, tmp_path):
    model = build(teacher_path, time_cond_proj_dim=None,
                  student=dict(unet=ssd_1b_student,
                               lora=dict(rank=4, alpha=4)))
    assert not hasattr(model, 'target_unet')
    # the teacher is the student's own starting UNet
    teacher = UNet2DConditionModel.from_pretrained(ssd_1b_student)
    for name, value in teacher.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[name], value)
    train_steps(model)
    out = tmp_path / 'export'
    export_model(model, str(out), step=2)
    assert osp.isfile(out / 'lora' / 'pytorch_lora_weights.safetensors')
    mine = torch.stack(model.generate(
        PROMPTS, seeds=[0, 1], num_inference_steps=4, guidance_scale=1.0,
        output_type='latent'))
    pipe = StableDiffusionXLPipeline.from_pretrained(
        teacher_path,
        unet=UNet2DConditionModel.from_pretrained(ssd_1b_student),
        scheduler=LCMScheduler.from_pretrained(out / 'scheduler'))
    plain = stock_latents(pipe, 4, 1.0)
    pipe.load_lora_weights(out / 'lora')
    stock = stock_latents(pipe, 4, 1.0)
    assert (stock - plain).abs().max() > 1e-3, 'the LoRA changed nothing'
    torch.testing.assert_close(stock, mine, rtol=0, atol=1e-5)


LCM_CONFIGS = sorted(
    osp.join(dp, f) for dp, _, fs in os.walk(
        osp.join(osp.dirname(__file__), '..', '..', 'configs', 'lcm'))
    for f in fs if f.endswith('.py'))


@pytest.mark.parametrize('path', LCM_CONFIGS,
                         ids=[osp.basename(p) for p in LCM_CONFIGS])
def test_real_lcm_configs_build_on_the_toy_topology(path, toy_sdxl,
                                                    ssd_1b_student):
    """Each real recipe (full LCM UNet or LCM-LoRA, own or given teacher)
    on the untrained toy SDXL pipeline of the same topology."""
    from mmengine.config import Config
    cfg = Config.fromfile(path)
    cfg.model.student.model = toy_sdxl
    if cfg.model.student.get('unet'):
        cfg.model.student.unet = ssd_1b_student
    if cfg.model.get('teacher'):
        cfg.model.teacher.model = toy_sdxl
    lora = cfg.model.student.get('lora')
    with DefaultScope.overwrite_default_scope('diffkd'):
        model = MODELS.build(cfg.model)
    assert model.is_lora == bool(lora)
    assert hasattr(model, 'target_unet') != bool(lora)
    if lora:
        assert model.time_cond_proj_dim is None
    else:
        assert model.time_cond_proj_dim == cfg.model.time_cond_proj_dim
