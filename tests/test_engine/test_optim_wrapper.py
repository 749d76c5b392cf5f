"""DiffusionOptimWrapper: the one owner of the optimizer step (precision,
gradient norm, non-finite losses), as configs name it."""
import pytest
import torch
from mmengine.registry import DefaultScope

from diffkd.engine.hooks import NonFiniteLossHook
from diffkd.engine import optim
from diffkd.engine.optim import DiffusionOptimWrapper
from diffkd.registry import OPTIM_WRAPPERS


def wrapper(**kwargs):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    return model, DiffusionOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1), **kwargs)


@pytest.mark.parametrize('dtype,cast', [(None, None), ('float32', None),
                                        ('bfloat16', torch.bfloat16),
                                        ('auto', torch.bfloat16)])
def test_precision_on_a_cpu(dtype, cast):
    model, w = wrapper(dtype=dtype)
    assert w.cast_dtype == cast and w.loss_scaler is None
    with w.optim_context(model):
        out = model(torch.randn(2, 4))
    assert out.dtype == (cast or torch.float32)
    assert model(torch.randn(2, 4)).dtype == torch.float32  # only inside


def test_gpu_float16_config_runs_as_bf16_autocast_on_a_cpu(monkeypatch):
    """A GPU config (fp16 with loss scaling) on a machine without CUDA: the
    wrapper, not a rewritten config, decides; mmengine's AmpOptimWrapper
    would refuse the CPU."""
    logged = []
    monkeypatch.setattr(optim, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    model, w = wrapper(dtype='float16', loss_scale='dynamic')
    assert w.cast_dtype == torch.bfloat16 and w.loss_scaler is None
    assert logged[0].startswith('no CUDA device: float16 mixed precision '
                                'runs as bfloat16 autocast on the cpu')
    with w.optim_context(model):
        assert model(torch.randn(2, 4)).dtype == torch.bfloat16


def test_bad_settings_name_the_key():
    with pytest.raises(ValueError, match=r"optim_wrapper.dtype must be one "
                       r"of .*'auto'\), got 'int8'"):
        wrapper(dtype='int8')
    with pytest.raises(ValueError, match="optim_wrapper.nonfinite must be "
                       "one of .*got 'ignore'"):
        wrapper(nonfinite='ignore')
    # The hook no longer decides: its old key says where the setting went.
    with pytest.raises(ValueError, match=r"set optim_wrapper.nonfinite="
                       r"'skip' \(DiffusionOptimWrapper\)"):
        NonFiniteLossHook(mode='skip')


def test_configs_build_it_by_name_and_checkpoints_resume_across_devices():
    model = torch.nn.Linear(4, 4)
    with DefaultScope.overwrite_default_scope('diffkd'):
        w = OPTIM_WRAPPERS.build(dict(
            type='DiffusionOptimWrapper', dtype='bfloat16', nonfinite='skip',
            max_skipped=3, clip_grad=dict(max_norm=1.0),
            optimizer=torch.optim.AdamW(model.parameters(), lr=0.1)))
    assert isinstance(w, DiffusionOptimWrapper)
    assert (w.nonfinite, w.max_skipped) == ('skip', 3)
    with w.optim_context(model):
        loss = model(torch.randn(3, 4)).float().pow(2).mean()
    w.update_params(loss)
    assert w.grad_norm is not None and float(w.grad_norm) > 0
    state = w.state_dict()
    assert 'loss_scaler' not in state  # bfloat16 scales nothing
    # A float16 GPU run's checkpoint carries its loss scaler's state; a
    # resume without loss scaling (a CPU) loads the optimizer state only.
    state['loss_scaler'] = dict(scale=65536.0)
    _, other = wrapper()
    other.optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    other.load_state_dict(state)
    assert other.optimizer.state_dict()['state'].keys() == \
        w.optimizer.state_dict()['state'].keys()


def test_nonfinite_off_checks_nothing():
    model, w = wrapper(nonfinite='off')
    before = model.weight.detach().clone()
    w.update_params(model(torch.randn(2, 4)).sum() * float('nan'))
    assert w.nonfinite_any is None and w.nonfinite_local is None
    assert torch.isnan(model.weight).all() and not torch.equal(
        model.weight, before)


def test_float16_loss_scaling_keeps_a_nonfinite_step_out(monkeypatch):
    """float16 on a GPU: AmpOptimWrapper's loss scaler. No GPU here, so
    the branch runs with torch's CPU GradScaler in the scaler's place."""
    from mmengine.optim.optimizer import amp_optimizer_wrapper
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available',
                        lambda: True)
    monkeypatch.setattr(optim, 'mixed_precision',
                        lambda dtype, device: (torch.float16, True))
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 4)
    w = DiffusionOptimWrapper(
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        dtype='float16', clip_grad=dict(max_norm=100.0))
    assert w.loss_scaler is not None and not w.nonfinite_on_device
    w.loss_scaler = torch.amp.GradScaler('cpu', init_scale=256.0,
                                         growth_interval=1000)
    x = torch.randn(3, 4)
    (model(x).pow(2).mean()).backward()
    expected = torch.nn.utils.clip_grad_norm_(model.parameters(), 1e9)
    model.zero_grad()
    before = model.weight.detach().clone()
    w.update_params(model(x).pow(2).mean())
    # the norm of the unscaled gradient, and a step taken
    torch.testing.assert_close(w.grad_norm, expected)
    assert not torch.equal(model.weight, before)
    before = model.weight.detach().clone()
    w.update_params(model(x).pow(2).mean() * float('nan'))
    assert torch.equal(model.weight, before) and w.nonfinite_synced
    assert w.loss_scaler.get_scale() == 128.0  # an overflow halves it
    state = w.state_dict()
    assert state['loss_scaler']['scale'] == 128.0
