"""Speed switches: same results, no per-step host syncs for logging."""
from types import SimpleNamespace

import pytest
import torch
from diffusers.models.attention_processor import AttnProcessor
from mmengine.hooks import LoggerHook
from mmengine.logging import MessageHub
from mmengine.registry import DefaultScope

from diffkd.engine.hooks import DeferredRuntimeInfoHook
from diffkd.engine.optim import DiffusionOptimWrapper
from diffkd.models.diffusion.speed import eager
from diffkd.registry import MODELS


def _build(cfg):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(cfg)


def _loss(model, toy_batch):
    torch.manual_seed(0)
    with torch.no_grad():
        return sum(v for k, v in model(toy_batch, mode='loss').items()
                   if 'loss' in k)


@pytest.fixture(scope='module')
def toy_batch():
    g = torch.Generator().manual_seed(1)
    return dict(img=torch.rand(2, 3, 32, 32, generator=g) * 2 - 1,
                text=['a red circle on a blue background', ''],
                time_ids=torch.tensor([[32., 32, 0, 0, 32, 32]] * 2))


def test_speed_switches_keep_the_math_and_reach_the_teacher(toy_sdxl,
                                                            toy_batch):
    base = dict(type='DiffusionDistiller',
                student=dict(type='StableDiffusionXL', model=toy_sdxl),
                teacher=dict(model=toy_sdxl), compression=dict(type='SSD1B'),
                features='layers')
    plain = _build(dict(base, student=dict(base['student'],
                                           channels_last=False)))
    fast = _build(dict(base, student=dict(
        base['student'], attention='eager', channels_last=True,
        compile=True)))
    # channels_last is on by default, for the teacher too
    default = _build(base)
    for unet in (default.student.unet, default.teacher):
        assert unet.conv_in.weight.is_contiguous(
            memory_format=torch.channels_last)
    for unet in (plain.student.unet, plain.teacher):
        assert unet.conv_in.weight.is_contiguous()
    for unet in (fast.student.unet, fast.teacher):
        assert all(isinstance(p, AttnProcessor)
                   for p in unet.attn_processors.values())
        w = unet.conv_in.weight
        assert w.is_contiguous(memory_format=torch.channels_last)
        # Compiled in place: checkpoints keep their parameter names.
        assert unet._compiled_call_impl is not None
    assert plain.state_dict().keys() == fast.state_dict().keys()
    # (compilation itself is measured by the benchmark: tracing a UNet
    # takes minutes on a CPU)
    with eager(fast.student.unet):
        torch.testing.assert_close(_loss(fast, toy_batch),
                                   _loss(plain, toy_batch), rtol=1e-4,
                                   atol=1e-5)
    torch.testing.assert_close(_loss(default, toy_batch),
                               _loss(plain, toy_batch), rtol=1e-4,
                               atol=1e-5)
    grads = []
    for model in (default, plain):
        torch.manual_seed(0)
        sum(v for k, v in model(toy_batch, mode='loss').items()
            if 'loss' in k).backward()
        grads.append(model.student.unet.conv_in.weight.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="attention must be one of"):
        _build(dict(type='StableDiffusionXL', model=toy_sdxl,
                    attention='flash'))


def test_logged_scalars_are_synced_once_per_log_interval(monkeypatch):
    hub = MessageHub.get_instance('test_deferred_runtime_info')
    p = torch.nn.Parameter(torch.ones(4))
    # Fused AdamW: the non-finite check skips on the device, no sync either.
    wrapper = DiffusionOptimWrapper(
        optimizer=torch.optim.AdamW([p], lr=0.0, fused=True),
        clip_grad=dict(max_norm=100.0))
    runner = SimpleNamespace(
        message_hub=hub, iter=0, max_iters=6, hooks=[LoggerHook(interval=3)],
        train_dataloader=None, optim_wrapper=wrapper, meta=None)
    hook = DeferredRuntimeInfoHook()
    hook._interval = 3
    losses = [0.5, 0.25, 0.125, 1.0, 2.0, 4.0]
    calls = []
    real_item = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, 'item',
                        lambda t: calls.append(1) or real_item(t))
    monkeypatch.setattr(torch.Tensor, '__float__',
                        lambda t: calls.append(1) or real_item(t))
    for i, v in enumerate(losses):
        runner.iter = i
        # the gradient of (2 * p).sum(): 2 per element, norm 4
        wrapper.update_params((2 * p).sum())
        assert torch.is_tensor(wrapper.grad_norm)  # left on the device
        hook.after_train_iter(runner, i, outputs=dict(
            loss=torch.tensor(v), kd_feat=torch.tensor(2 * v)))
        history = hub.log_scalars.get('train/loss')
        # Nothing reaches the hub (and nothing is synced) between flushes.
        assert len(history.data[0] if history else []) == 3 * ((i + 1) // 3)
    assert not calls  # .item() never: one .tolist() per flush
    assert list(hub.get_scalar('train/loss').data[0]) == losses
    assert list(hub.get_scalar('train/kd_feat').data[0]) == [
        2 * v for v in losses]
    assert list(hub.get_scalar('train/grad_norm').data[0]) == \
        pytest.approx([4.0] * 6)
