"""diffkd.analysis.benchmark_train's stage clock on a plain mmengine
Runner: modules that take known times are charged to their stages, through
hooks only."""
import os
import os.path as osp
import time

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from torch import nn

from diffkd.analysis.benchmark_train import STAGES, TrainTiming, _summary
from diffkd.utils.profiling import PeakMemory, StageTimer

ENCODE, TEACHER, DATA = 0.02, 0.05, 0.01


class Sleeps(nn.Module):
    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds
        self.lin = nn.Linear(2, 2)

    def forward(self, x):
        time.sleep(self.seconds)
        return self.lin(x)


class Vae(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Sleeps(ENCODE / 2)


class Student(BaseModel):
    text_encoder_names = ('text_encoder', )

    def __init__(self):
        super().__init__()
        self.vae = Vae()
        self.text_encoder = Sleeps(ENCODE / 2)
        self.unet = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='loss'):
        x = torch.stack(inputs)
        with torch.no_grad():
            x = self.vae.encoder(x) + self.text_encoder(x)
        return dict(loss=self.unet(x).pow(2).mean())


class Distiller(BaseModel):
    def __init__(self):
        super().__init__()
        self.student = Student()
        self.teacher = Sleeps(TEACHER)

    def forward(self, inputs, data_samples=None, mode='loss'):
        with torch.no_grad():
            self.teacher(torch.stack(inputs))
        return self.student(inputs)


class SlowData(torch.utils.data.Dataset):
    def __len__(self):
        return 64

    def __getitem__(self, i):
        time.sleep(DATA)
        return dict(inputs=torch.ones(2))


class SamplesEveryIter(Hook):
    """Calls the encoders between iterations, as sampling hooks do: not
    part of any stage."""

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        runner.model.teacher(torch.ones(1, 2))
        runner.model.student.text_encoder(torch.ones(1, 2))


def test_stages_are_charged_by_hooks(tmp_path):
    warmup, iters = 1, 3
    timer, memory = StageTimer(), PeakMemory()
    timing = TrainTiming(timer, memory, warmup)
    model = Distiller()
    # (the runner's scope is this test's only: later tests build diffkd's)
    with DefaultScope.overwrite_default_scope('mmengine'):
        runner = Runner(
            model=model, work_dir=str(tmp_path),
            train_dataloader=dict(dataset=SlowData(), batch_size=1,
                                  sampler=dict(type='DefaultSampler',
                                               shuffle=False)),
            train_cfg=dict(by_epoch=False, max_iters=warmup + iters + 1),
            optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
            custom_hooks=[dict(type=SamplesEveryIter)],
            default_hooks=dict(checkpoint=None, logger=None),
            default_scope='mmengine')
        for hook, priority in timing.hooks():
            runner.register_hook(hook, priority=priority)
        forward = Distiller.forward
        runner.train()
    # Observed, not changed: no method of the model was replaced, and every
    # module and optimizer hook is gone after the run.
    assert 'train_step' not in vars(model) and Distiller.forward is forward
    assert not model.teacher._forward_hooks
    assert not model.student.vae.encoder._forward_pre_hooks
    assert timing.handles == []
    res = _summary(timer, iters, 1, timing.marks['peak'], memory.start,
                   memory.method)
    split = res['split_s_per_iter']
    assert list(split) == list(STAGES)
    assert sum(split.values()) == pytest.approx(res['s_per_iter'], rel=1e-6)
    # each stage at least its sleep, and not another stage's
    assert ENCODE <= split['encode'] < ENCODE + 0.02
    assert TEACHER <= split['teacher_forward'] < TEACHER + 0.02
    assert DATA <= split['data'] < DATA + 0.02
    assert 0 < split['optimizer'] < split['encode']
    assert len(timer.samples['iteration']) == iters


def test_random_weights_are_written_once_and_reused(tmp_path, monkeypatch):
    """With ``reuse`` a copy written whole by an earlier call is used as it
    is; one left half-written (no completion mark) is written again."""
    from mmengine.config import Config

    import diffkd.analysis.benchmark_train as bt
    written = []

    def save(name, out_dir, width_divisor=1):
        written.append(name)
        os.makedirs(out_dir, exist_ok=True)
        return osp.abspath(out_dir)

    monkeypatch.setattr(bt, 'save_random_pipeline', save)
    name = 'CompVis/stable-diffusion-v1-4'

    def cfg():
        return Config(dict(model=dict(teacher=dict(model=name)),
                           train_dataloader=dict(dataset=dict())))

    first, again = cfg(), cfg()
    folders = bt.use_random_weights(first, str(tmp_path), lambda m: None,
                                    reuse=True)
    assert bt.use_random_weights(again, str(tmp_path), lambda m: None,
                                 reuse=True) == folders
    assert written == [name]
    assert again.model.teacher.model == folders[name] == osp.abspath(
        tmp_path / 'CompVis--stable-diffusion-v1-4')
    os.remove(osp.join(folders[name], '.complete'))
    bt.use_random_weights(cfg(), str(tmp_path), lambda m: None, reuse=True)
    # without reuse, always written
    bt.use_random_weights(cfg(), str(tmp_path), lambda m: None)
    assert written == [name] * 3
