"""A teacher in bf16/fp16 (every real distillation config runs it so) must
change neither the student's starting weights nor the conditioning the
teacher sees. Checked on the toy pipelines and on the published
architectures with random weights at 1/8 width."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from diffusers import UNet2DConditionModel
from mmengine.registry import DefaultScope

from diffkd.models.compression.student import teacher_name
from diffkd.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DTYPES = ['bfloat16', 'float16']


def build(**kw):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(dict(type='DiffusionDistiller', **kw))


def distiller(path, recipe, dtype, xl, **kw):
    kind = 'StableDiffusionXL' if xl else 'StableDiffusion'
    return build(student=dict(type=kind, model=path),
                 teacher=dict(model=path, dtype=dtype),
                 compression=dict(type=recipe), **kw)


def assert_student_is_the_fp32_teacher(model, path, dtype):
    assert next(model.teacher.parameters()).dtype == getattr(torch, dtype)
    fp32 = UNet2DConditionModel.from_pretrained(
        path, subfolder='unet').state_dict()
    assert next(iter(fp32.values())).dtype == torch.float32
    state = model.student.unet.state_dict()
    differ = [
        n for n, v in state.items()
        if v.dtype != torch.float32
        or not torch.equal(v, fp32[teacher_name(n, model.module_map)])
    ]
    assert not differ, (
        f'{len(differ)} of {len(state)} student tensors are not the fp32 '
        f'teacher tensor the module map names, e.g. {differ[:3]}')


# Without feature pairs or output KD the build runs no forward pass.
NO_FORWARD = dict(features=None, loss_weights=dict(output=0.0))


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('recipe,xl', [('SSD1B', True), ('KOALA1B', True),
                                       ('BKSDMTiny', False)])
def test_toy_student_starts_from_fp32_teacher(recipe, xl, dtype, toy_sd15,
                                              toy_sdxl):
    path = toy_sdxl if xl else toy_sd15
    model = distiller(path, recipe, dtype, xl, **NO_FORWARD)
    assert_student_is_the_fp32_teacher(model, path, dtype)


@pytest.fixture(scope='module')
def narrow_pipelines(tmp_path_factory):
    """Published SD-1.5, SD-2.1 and SDXL architectures at 1/8 width, random
    weights, saved as diffusers folders."""
    from diffkd.models.diffusion.random_init import save_random_pipeline
    root = tmp_path_factory.mktemp('narrow')
    return {
        key: save_random_pipeline(key, str(root / key), width_divisor=8)
        for key in ('sd15', 'sd21', 'sdxl_base')
    }


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('arch,recipe', [('sd15', 'BKSDMTiny'),
                                         ('sd21', 'BKSDMSmall'),
                                         ('sdxl_base', 'SSD1B'),
                                         ('sdxl_base', 'KOALA700M')])
def test_real_architecture_student_starts_from_fp32_teacher(
        narrow_pipelines, arch, recipe, dtype):
    path = narrow_pipelines[arch]
    model = distiller(path, recipe, dtype, arch == 'sdxl_base',
                      **NO_FORWARD)
    assert_student_is_the_fp32_teacher(model, path, dtype)


def _capture_unet_inputs(model):
    seen = {}

    def grab(name):

        def hook(module, args, kwargs):
            seen[name] = dict(
                sample=args[0], hidden=args[2],
                **{k: v for k, v in kwargs['added_cond_kwargs'].items()})

        return hook

    handles = [
        model.teacher.register_forward_pre_hook(grab('teacher'),
                                                with_kwargs=True),
        model.student.unet.register_forward_pre_hook(grab('student'),
                                                     with_kwargs=True)
    ]
    return seen, handles


@pytest.mark.parametrize('dtype', DTYPES)
def test_teacher_sees_the_students_exact_sdxl_conditioning(
        narrow_pipelines, dtype):
    path = narrow_pipelines['sdxl_base']
    model = distiller(path, 'SSD1B', dtype, True, features=None)
    seen, handles = _capture_unet_inputs(model)
    # Original sizes above 256 px: bf16 rounds 1365 to 1368, 1021 to 1020.
    ids = torch.tensor([[1365., 1021., 37., 3., 1024., 1024.],
                        [1021., 1365., 0., 0., 1024., 768.]])
    inputs = dict(img=torch.rand(2, 3, 64, 64) * 2 - 1,
                  text=['a red circle', 'a blue square'], time_ids=ids)
    torch.manual_seed(0)
    model(**model.data_preprocessor(dict(inputs=inputs), True), mode='loss')
    for h in handles:
        h.remove()
    t, s = seen['teacher'], seen['student']
    assert torch.equal(s['time_ids'], ids)
    for key in ('time_ids', 'text_embeds'):
        assert t[key].dtype == s[key].dtype == torch.float32, key
        assert torch.equal(t[key], s[key]), key
    # One fp32 prompt encoding feeds both; the teacher's attention layers
    # take it in their own dtype, as a bf16/fp16 pipeline or autocast does.
    low = getattr(torch, dtype)
    assert s['hidden'].dtype == torch.float32
    assert t['hidden'].dtype == low
    assert torch.equal(t['hidden'], s['hidden'].to(low))
    assert torch.equal(t['sample'], s['sample'].to(low))


@pytest.mark.parametrize('dtype', DTYPES)
def test_teacher_runs_in_its_own_dtype_under_the_students_autocast(
        toy_sd15, dtype):
    """The optimizer wrapper autocasts the step (bf16 on a CPU, for a float16
    config too); the teacher runs in its own dtype outside that autocast, as
    in the official scripts. An fp16 teacher under CPU bf16 autocast failed
    in its group norms ("mixed dtype (CPU)")."""
    model = distiller(toy_sd15, 'BKSDMTiny', dtype, False)
    seen = []
    handle = model.teacher.register_forward_hook(
        lambda module, args, kwargs, output: seen.append(
            (args, kwargs, output[0])), with_kwargs=True)
    inputs = model.data_preprocessor(dict(inputs=dict(
        img=torch.rand(2, 3, 32, 32) * 2 - 1,
        text=['a red circle', 'a blue square'])), True)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(**inputs, mode='loss')
    handle.remove()
    assert set(losses) >= {'loss_task', 'loss_kd_out', 'loss_kd_feat'}
    assert all(torch.isfinite(v) for v in losses.values())
    (args, kwargs, output), = seen
    low = getattr(torch, dtype)
    assert args[0].dtype == output.dtype == low
    # The same inputs through the teacher without any autocast.
    with torch.no_grad():
        assert torch.equal(model.teacher(*args, **kwargs)[0], output)


def test_pretrained_student_check_builds_no_weights():
    """The shape check of a pretrained SSD-1B student (real size) against
    its recipe allocates no second UNet (it was 5.3 GB in fp32)."""
    script = r'''
import json, resource, sys, torch
from diffusers import UNet2DConditionModel
from diffkd.models.compression import build_compression
from diffkd.models.compression.teacher_configs import load_teacher_config
from diffkd.models.distill.distiller import DiffusionDistiller
s_cfg = build_compression(dict(type='SSD1B'))(
    load_teacher_config('sdxl_base')).student_config
with torch.device('meta'):  # the student's own weights are not the point
    student = UNet2DConditionModel.from_config(s_cfg)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
DiffusionDistiller._check_student_matches(student, s_cfg)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps(dict(grew_kib=after - before)))
'''
    env = dict(os.environ, PYTHONPATH=REPO)
    out = subprocess.run([sys.executable, '-c', script], env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    grew = json.loads(out.stdout.strip().splitlines()[-1])['grew_kib']
    # ru_maxrss is in KiB on Linux; an fp32 SSD-1B UNet is 5.3e6 KiB.
    assert grew < 300 * 1024, f'the check raised peak memory by {grew} KiB'
