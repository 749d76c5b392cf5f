"""TrainableEMAHook: mmengine's EMAHook over the trainable weights only."""
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import EMAHook
from mmengine.registry import DefaultScope

from diffkd.engine.hooks import TrainableEMAHook
from diffkd.registry import HOOKS, ConfigKeyError, RenamedTypeError


class Distiller(nn.Module):
    """A frozen teacher beside a student whose first layer is frozen."""

    def __init__(self):
        super().__init__()
        self.teacher = nn.Linear(4, 4).requires_grad_(False)
        self.student = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
        self.student[0].requires_grad_(False)


def runner_for(model, resume=False):
    return SimpleNamespace(model=model, iter=0, max_iters=10,
                           _resume=resume)


def step(model, runner, hook, value):
    """One 'optimizer step' that sets every trainable weight to value."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.fill_(value)
    hook.after_train_iter(runner, 0)
    runner.iter += 1


def trainable(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def build_hook(**kwargs):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return HOOKS.build(dict(type='TrainableEMAHook', **kwargs))


def test_averages_only_the_trainable_weights():
    model = Distiller()
    runner = runner_for(model)
    hook = build_hook(momentum=0.25)
    hook.before_run(runner)
    averaged = dict(hook.ema_model.module.named_parameters())
    assert set(averaged) == {'student.1.weight', 'student.1.bias'}
    assert runner.diffkd_ema is hook
    teacher = model.teacher.weight.clone()
    for value in (1.0, 2.0, 3.0):
        step(model, runner, hook, value)
    # mmengine: the first update copies, later ones lerp by momentum
    want = (1.0 * 0.75 + 2.0 * 0.25) * 0.75 + 3.0 * 0.25
    for p in averaged.values():
        assert torch.allclose(p, torch.full_like(p, want))
    with runner.diffkd_ema.swapped(model):
        for p in trainable(model).values():
            assert torch.allclose(p, torch.full_like(p, want))
    for p in trainable(model).values():
        assert torch.equal(p, torch.full_like(p, 3.0))
    assert torch.equal(model.teacher.weight, teacher)


def test_checkpoint_holds_the_average_and_resumes_it():
    model = Distiller()
    runner = runner_for(model)
    hook = build_hook(momentum=0.5)
    hook.before_run(runner)
    for value in (1.0, 3.0):
        step(model, runner, hook, value)
    checkpoint = dict(state_dict=model.state_dict(), meta=dict(iter=2))
    hook.before_save_checkpoint(runner, checkpoint)
    assert float(checkpoint['state_dict']['student.1.bias'][0]) == 2.0
    assert float(checkpoint['ema_state_dict']['module.student.1.bias'][0]) \
        == 3.0
    # a fresh run resumes the raw weights into the model and the average
    # into the hook
    fresh = Distiller()
    runner2 = runner_for(fresh, resume=True)
    hook2 = build_hook(momentum=0.5)
    hook2.before_run(runner2)
    hook2.after_load_checkpoint(runner2, checkpoint)
    fresh.load_state_dict(checkpoint['state_dict'])
    assert float(fresh.student[1].bias.detach()[0]) == 3.0
    assert int(hook2.ema_model.steps) == 2
    for p in hook2.ema_model.module.parameters():
        assert torch.allclose(p, torch.full_like(p, 2.0))


def test_resumes_the_former_diffkd_ema_layout():
    """diffkd's former EMAHook saved {name: average} beside the raw
    weights."""
    model = Distiller()
    state = model.state_dict()
    average = {n: torch.full_like(p, 5.0)
               for n, p in trainable(model).items()}
    checkpoint = dict(state_dict=state, ema_state_dict=average,
                      meta=dict(iter=7))
    runner = runner_for(model, resume=True)
    hook = build_hook(momentum=0.5)
    hook.before_run(runner)
    hook.after_load_checkpoint(runner, checkpoint)
    assert int(hook.ema_model.steps) == 7
    for p in hook.ema_model.module.parameters():
        assert torch.equal(p, torch.full_like(p, 5.0))
    assert checkpoint['state_dict'] is state  # the raw weights, untouched


def test_former_ema_hook_config_names_the_new_hook():
    with DefaultScope.overwrite_default_scope('diffkd'):
        with pytest.raises(RenamedTypeError,
                           match=r"'TrainableEMAHook', momentum=0\.001"):
            HOOKS.build(dict(type='EMAHook', decay=0.999))
        with pytest.raises(RenamedTypeError, match='TrainableEMAHook'):
            HOOKS.build(dict(type='EMAHook'))
        # mmengine's own hook, asked for by its scope, is mmengine's
        assert type(HOOKS.build(dict(type='mmengine.EMAHook'))) is EMAHook
    assert HOOKS.get('EMAHook') is EMAHook  # not shadowed
    with pytest.raises(ConfigKeyError, match=r'momentum=0\.1 instead'):
        TrainableEMAHook(decay=0.9)


def test_nothing_to_average_is_an_error():
    model = Distiller().requires_grad_(False)
    with pytest.raises(ValueError, match='Distiller has no trainable'):
        build_hook().before_run(runner_for(model))
