"""Memory switches: 8-bit AdamW, a bf16 student with fp32 master weights,
an fp8 teacher's build-time check. Each is compared with what it replaces
(docs/performance.md, "Speed switches")."""
import io
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.registry import DefaultScope

from diffkd.engine.optim import (DiffusionOptimWrapper,
                                 TrainableParamsOptimWrapperConstructor)
from diffkd.models.distill import distiller as distiller_module
from tests.conftest import run_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def toy_net(dtype=torch.float32):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.GELU(),
                              torch.nn.Linear(128, 1))
    return net.to(dtype)


def build_wrapper(net, optimizer, **kwargs):
    """Through the constructor the configs name, as the Runner builds it."""
    with DefaultScope.overwrite_default_scope('diffkd'):
        return TrainableParamsOptimWrapperConstructor(
            dict(type='DiffusionOptimWrapper', optimizer=optimizer,
                 **kwargs))(net)


def batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(64, 1, generator=g) / 8
    for _ in range(n):
        x = torch.randn(32, 64, generator=g)
        yield x, x @ w


def train(net, wrapper, data):
    losses = []
    dtype = next(net.parameters()).dtype
    for x, y in data:
        with wrapper.optim_context(net):
            loss = (net(x.to(dtype)).float() - y).pow(2).mean()
        wrapper.update_params(loss)
        losses.append(float(loss.detach()))
    return losses


# ------------------------------------------------------------ AdamW8bit
def test_adamw8bit_is_registered_without_bitsandbytes():
    """diffkd imports and registers the name without bitsandbytes (peft,
    not diffkd, imports it at import time where it is installed)."""
    code = ("import sys; sys.modules['bitsandbytes'] = None; "
            'import diffkd.engine; from diffkd.registry import OPTIMIZERS; '
            "print(OPTIMIZERS.get('AdamW8bit').__name__)")
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == 'AdamW8bit'


def test_adamw8bit_without_bitsandbytes_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'bitsandbytes', None)
    with pytest.raises(ImportError, match=r"'AdamW8bit' needs bitsandbytes:"
                       r' pip install bitsandbytes'):
        build_wrapper(toy_net(), dict(type='AdamW8bit', lr=1e-3))


def test_adamw8bit_tracks_adamw_with_one_byte_per_state():
    pytest.importorskip(
        'bitsandbytes', reason='AdamW8bit runs bitsandbytes, which the '
        'tests extra leaves out (it slows every peft import); pip install '
        '"diffkd[memory]" runs this test')
    runs = {}
    for name in ('AdamW', 'AdamW8bit'):
        net = toy_net()
        # fused=True as the toy and SDXL schedules set it: changing only
        # the type switches the optimizer.
        w = build_wrapper(net, dict(type=name, lr=3e-3, weight_decay=1e-2,
                                    fused=True))
        runs[name] = (net, w, train(net, w, batches(30)))
    (net, _, ref), (net8, w8, mine) = runs['AdamW'], runs['AdamW8bit']
    assert type(w8.optimizer).__name__ == 'AdamW8bit'
    assert mine[-1] < 0.1 * mine[0]  # it trains
    # 30 steps (loss 1.21 -> 0.063): losses within 2 % of AdamW's (0.6 %
    # measured), weights within 1.2e-2 (6e-3 measured; they move by up
    # to 0.09).
    for a, b in zip(mine, ref):
        assert abs(a - b) <= 0.02 * b, (mine, ref)
    for p, q in zip(net8.parameters(), net.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1.2e-2)
    # Both moments of the large weights are one byte per element, plus a
    # 4-byte scale per block of 256 (1.6 %) and a fixed 256-entry code
    # table per moment.
    weight = net8[0].weight  # 8192 elements (bitsandbytes: >= 4096)
    state = w8.optimizer.state[weight]
    assert state['state1'].dtype == state['state2'].dtype == torch.uint8
    assert state['state1'].numel() == weight.numel()
    per_element = sum(state[k].numel() * state[k].element_size()
                      for k in ('state1', 'state2', 'absmax1', 'absmax2'))
    assert per_element / (2 * weight.numel()) <= 1 + 4 / 256
    assert state['qmap1'].numel() == state['qmap2'].numel() == 256
    adamw_state = runs['AdamW'][1].optimizer.state[net[0].weight]
    assert adamw_state['exp_avg'].element_size() == 4


# ------------------------------------------- bf16 student, fp32 masters
def test_bf16_parameters_with_master_weights_track_fp32():
    ref_net = toy_net()
    ref = train(ref_net, build_wrapper(ref_net, dict(type='AdamW', lr=3e-3)),
                batches(30))
    net = toy_net(torch.bfloat16)
    w = build_wrapper(net, dict(type='AdamW', lr=3e-3))
    mine = train(net, w, batches(30))
    # The parameters and their gradients stay bf16 (gradients are moved
    # into the fp32 masters, not kept); the optimizer steps fp32 masters.
    assert all(p.dtype == torch.bfloat16 and p.grad is None
               for p in net.parameters())
    masters = [w.master_weight(p) for p in net.parameters()]
    assert all(m.dtype == torch.float32 for m in masters)
    assert all(torch.equal(p, m.to(torch.bfloat16))
               for p, m in zip(net.parameters(), masters))
    # bf16 forwards (8-bit mantissa): losses within 2 % of fp32's (0.6 %
    # measured), masters within 1.2e-2 of the fp32 weights (7e-3).
    for a, b in zip(mine, ref):
        assert abs(a - b) <= 0.02 * b, (mine, ref)
    for m, q in zip(masters, ref_net.parameters()):
        torch.testing.assert_close(m, q, rtol=0, atol=1.2e-2)
    assert mine[-1] < 0.1 * mine[0]


@pytest.mark.parametrize('master_weights', [True, False])
def test_updates_below_bf16_resolution_accumulate_in_the_master(
        master_weights):
    """lr * grad = 1e-4 per step on a weight of 1.0, where bf16's spacing
    is 2**-7: without master weights every step rounds back to 1.0."""
    p = torch.nn.Parameter(torch.ones(8, dtype=torch.bfloat16))
    w = DiffusionOptimWrapper(torch.optim.SGD([p], lr=1e-4),
                              master_weights=master_weights)
    for _ in range(100):
        w.update_params(p.float().sum())  # gradient 1
    if master_weights:
        # (100 fp32 subtractions: 2e-6 of rounding)
        torch.testing.assert_close(w.master_weight(p),
                                   torch.full((8, ), 0.99), rtol=0,
                                   atol=1e-5)
        assert torch.equal(p, torch.full((8, ), 0.99).bfloat16())
    else:
        assert torch.equal(p, torch.ones(8, dtype=torch.bfloat16))


def test_gradient_accumulation_sums_in_fp32():
    p = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    w = DiffusionOptimWrapper(torch.optim.SGD([p], lr=1.0),
                              accumulative_counts=2)
    # Gradients 1 and 2**-8 (mmengine halves each loss): each is a bf16
    # number, their sum is not (bf16's spacing at 1 is 2**-7), so summed in
    # bf16 the step would be 1.0 and the weight 0.
    w.update_params(2 * p.float().sum())
    assert p.grad is None and torch.equal(p, torch.ones(4).bfloat16())
    w.update_params(2 * 2**-8 * p.float().sum())
    assert torch.equal(w.master_weight(p), torch.full((4, ), -2**-8))


def _resumed(state, steps):
    net = toy_net(torch.bfloat16)
    net.load_state_dict(state['model'])
    w = build_wrapper(net, dict(type='AdamW', lr=1e-4))
    w.load_state_dict(state['optim'])
    train(net, w, steps)
    return net, w


def test_resume_restores_the_fp32_masters_exactly():
    data = list(batches(6))
    net = toy_net(torch.bfloat16)
    straight = build_wrapper(net, dict(type='AdamW', lr=1e-4))
    train(net, straight, data)

    half = toy_net(torch.bfloat16)
    w = build_wrapper(half, dict(type='AdamW', lr=1e-4))
    train(half, w, data[:3])
    buf = io.BytesIO()
    torch.save(dict(model=half.state_dict(), optim=w.state_dict()), buf)
    buf.seek(0)
    state = torch.load(buf)
    saved = state['optim'][DiffusionOptimWrapper.MASTER_KEY]
    assert {m.dtype for m in saved.values()} == {torch.float32}
    assert len(saved) == 4  # every bf16 parameter
    # the checkpoint's model weights are the masters' rounding
    for p, m in zip(state['model'].values(), [saved[i] for i in range(4)]):
        assert torch.equal(p, m.bfloat16())

    resumed, rw = _resumed(state, data[3:])
    for p, q in zip(resumed.parameters(), net.parameters()):
        assert torch.equal(p, q)
        assert torch.equal(rw.master_weight(p), straight.master_weight(q))
    # Without the masters (re-made from the bf16 weights) the run drifts:
    # lr 1e-4 moves the weights by less than bf16 resolves.
    state['optim'].pop(DiffusionOptimWrapper.MASTER_KEY)
    drifted, dw = _resumed(state, data[3:])
    assert not all(torch.equal(dw.master_weight(p),
                               straight.master_weight(q))
                   for p, q in zip(drifted.parameters(), net.parameters()))


def test_fp32_resume_of_a_bf16_run_takes_the_masters():
    net = toy_net(torch.bfloat16)
    w = build_wrapper(net, dict(type='AdamW', lr=1e-4))
    train(net, w, batches(2))
    state = w.state_dict()
    full = toy_net()
    fw = build_wrapper(full, dict(type='AdamW', lr=1e-4))
    fw.load_state_dict(state)
    for p, q in zip(full.parameters(), net.parameters()):
        assert torch.equal(p, w.master_weight(q))


def test_ema_of_bf16_weights_is_refused():
    from diffkd.registry import HOOKS
    from types import SimpleNamespace
    net = toy_net(torch.bfloat16)
    with DefaultScope.overwrite_default_scope('diffkd'):
        hook = HOOKS.build(dict(type='TrainableEMAHook', momentum=1e-4))
    with pytest.raises(ValueError, match=r'TrainableEMAHook: the trainable '
                       r'parameters of Sequential are bfloat16 .*loses every '
                       r'update smaller than its resolution'):
        hook.before_run(SimpleNamespace(model=net))


def test_student_dtype_names_the_key_when_wrong(toy_sd15):
    from diffkd.registry import MODELS
    with DefaultScope.overwrite_default_scope('diffkd'), pytest.raises(
            ValueError, match=r"model.student.dtype .* must be one of "
            r".*'bfloat16'.*got 'bf16'"):
        MODELS.build(dict(type='StableDiffusion', model=toy_sd15,
                          dtype='bf16'))


def test_bf16_student_trains_checkpoints_masters_and_resumes_exactly(
        tmp_path, toy_sd15):
    """Through tools/train.py: the UNet is stored in bf16, the checkpoint
    holds the fp32 masters, a resumed run equals an uninterrupted one."""
    opts = ('model.dtype=bfloat16', 'default_hooks.checkpoint.interval=2',
            'custom_hooks=[]', 'train_dataloader.batch_size=2')
    straight = run_config('toy/sd15_finetune_toy.py', tmp_path / 'straight',
                          'train_cfg.max_iters=4', *opts)
    part = run_config('toy/sd15_finetune_toy.py', tmp_path / 'part',
                      'train_cfg.max_iters=2', *opts)
    run_config('toy/sd15_finetune_toy.py', tmp_path / 'part',
               'train_cfg.max_iters=4', *opts, resume=True)
    a = torch.load(osp.join(straight, 'iter_4.pth'), weights_only=False)
    b = torch.load(osp.join(part, 'iter_4.pth'), weights_only=False)
    unet = {k: v for k, v in a['state_dict'].items() if k.startswith('unet.')}
    assert unet and {v.dtype for v in unet.values()} == {torch.bfloat16}
    masters = a['optimizer'][DiffusionOptimWrapper.MASTER_KEY]
    assert len(masters) == len(unet)
    assert {m.dtype for m in masters.values()} == {torch.float32}
    for key, value in a['state_dict'].items():
        assert torch.equal(b['state_dict'][key], value), key
    for i, value in masters.items():
        torch.testing.assert_close(
            b['optimizer'][DiffusionOptimWrapper.MASTER_KEY][i], value,
            rtol=0, atol=1e-6)


def test_distiller_bf16_student_scores_as_the_fp32_one(toy_sdxl):
    """The SDXL-topology distiller: a bf16 student (fp32 teacher) gives
    the fp32 student's loss terms to bf16 precision, and its gradients
    reach the fp32 masters."""
    from diffkd.registry import MODELS
    base = dict(type='DiffusionDistiller',
                student=dict(type='StableDiffusionXL', model=toy_sdxl),
                teacher=dict(model=toy_sdxl), compression=dict(type='SSD1B'),
                features='layers')
    g = torch.Generator().manual_seed(1)
    batch = dict(img=torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
                 text=['a red circle on a blue background', ''],
                 time_ids=torch.tensor([[32., 32, 0, 0, 32, 32]] * 2))
    losses = {}
    with DefaultScope.overwrite_default_scope('diffkd'):
        for dtype in (None, 'bfloat16'):
            model = MODELS.build(dict(base, student=dict(
                base['student'], dtype=dtype)))
            torch.manual_seed(0)
            losses[dtype] = model(batch, mode='loss')
    assert model.student.unet.dtype == torch.bfloat16
    assert model.teacher.dtype == torch.float32
    for key in ('loss_task', 'loss_kd_out', 'loss_kd_feat'):
        # bf16 weights and activations: 2 % (0.04-0.3 % measured)
        torch.testing.assert_close(losses['bfloat16'][key],
                                   losses[None][key], rtol=2e-2, atol=0)
    w = DiffusionOptimWrapper(torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=1e-3))
    w.update_params(sum(v for k, v in losses['bfloat16'].items()
                        if k.startswith('loss')))
    conv = model.student.unet.conv_in.weight
    assert conv.grad is None and conv.dtype == torch.bfloat16
    assert torch.equal(conv, w.master_weight(conv).bfloat16())


# ------------------------------------------------------------ fp8 teacher
def test_float8_teacher_needs_a_gpu_of_capability_8_9(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    with pytest.raises(distiller_module.DistillConfigError,
                       match=r"model.teacher.dtype='float8' needs a CUDA GPU"
                       r' of compute capability 8.9 or newer .*this machine '
                       r'has no CUDA device'):
        distiller_module.check_float8_device()
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'get_device_capability',
                        lambda *a: (8, 0))
    monkeypatch.setattr(torch.cuda, 'get_device_name',
                        lambda *a: 'NVIDIA A100-SXM4-80GB')
    with pytest.raises(distiller_module.DistillConfigError,
                       match=r'NVIDIA A100-SXM4-80GB has compute capability'
                       r' 8.0'):
        distiller_module.check_float8_device()


def test_float8_teacher_is_refused_when_the_model_is_built(toy_sd15):
    from diffkd.registry import MODELS
    if torch.cuda.is_available() and \
            torch.cuda.get_device_capability() >= (8, 9):
        pytest.skip('this GPU runs fp8')
    cfg = dict(type='DiffusionDistiller',
               student=dict(type='StableDiffusion', model=toy_sd15),
               teacher=dict(model=toy_sd15, dtype='float8'),
               features=None)
    with DefaultScope.overwrite_default_scope('diffkd'), pytest.raises(
            distiller_module.DistillConfigError,
            match=r"model.teacher.dtype='float8' needs a CUDA GPU"):
        MODELS.build(cfg)


def test_float8_without_torchao_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, 'torchao', None)
    monkeypatch.setitem(sys.modules, 'torchao.quantization', None)
    with pytest.raises(ImportError, match=r"'float8' needs torchao .*: pip "
                       r'install torchao'):
        distiller_module.quantize_float8(torch.nn.Linear(2, 2))
