"""Fault scenarios on toy runs: each ends as docs/reliability.md says
(exit status, message, files on disk) and resumes from the last good
checkpoint to the weights of an uninterrupted run."""
import errno
import json
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.fileio.backends.local_backend import LocalBackend

from diffkd.engine.checkpoint import safe_torch_load
from tests.conftest import REPO
from tests.test_reliability.conftest import (one_thread, run_cli,
                                             subprocess_env)

MAX_ITERS = 6
PROBES = "custom_imports = dict(imports=['tests.test_reliability.probes'], " \
    'allow_failed_imports=False)'


def sd15_config(path, data, hooks='', model='', nonfinite='stop'):
    """The toy SD 1.5 fine-tune: batch 2, a checkpoint every 2 iterations
    (max_keep_ckpts=1 from the schedule), a final export."""
    path.write_text(f"""
_base_ = '{osp.join(REPO, 'configs', 'toy', 'sd15_finetune_toy.py')}'
{PROBES}
train_dataloader = dict(batch_size=2, dataset=dict(dataset='{data}'))
train_cfg = dict(max_iters={MAX_ITERS})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
optim_wrapper = dict(nonfinite='{nonfinite}')
custom_hooks = [dict(type='DiffusersExportHook'), {hooks}]
{model}
""")
    return str(path)


def last_checkpoint(work):
    with open(osp.join(work, 'last_checkpoint')) as f:
        return f.read().strip()


def assert_same_weights(work, reference, name=f'iter_{MAX_ITERS}.pth'):
    a = safe_torch_load(osp.join(reference, name))
    b = safe_torch_load(osp.join(work, name))
    assert a['meta']['iter'] == b['meta']['iter'] == MAX_ITERS
    for key, value in a['state_dict'].items():
        # Exact resume: same data, noise and optimizer state; equal up to
        # float reassociation.
        torch.testing.assert_close(b['state_dict'][key], value, rtol=0,
                                   atol=1e-6)


def resume(cfg, work):
    with one_thread():
        assert run_cli(cfg, work, resume=True) == 0
    assert osp.isfile(osp.join(work, 'final', 'unet', 'config.json'))


class Background:
    """A subprocess started early: it runs on the second core while the
    in-process runs (one thread) use the first. Output goes to files in
    ``logs`` (a pipe nobody reads yet could fill up and block it)."""

    def __init__(self, cmd, logs, **kwargs):
        self.logs = logs
        with open(logs / 'stdout', 'w') as out, \
                open(logs / 'stderr', 'w') as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err,
                                         text=True, **kwargs)

    def wait(self, timeout=300):
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return (self.proc.returncode, (self.logs / 'stdout').read_text(),
                (self.logs / 'stderr').read_text())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope='module')
def sigterm_run(tmp_path_factory, toy_sd15, small_shapes):
    """Training in a subprocess that waits after iteration 3 for SIGTERM."""
    tmp = tmp_path_factory.mktemp('sigterm')
    cfg = sd15_config(tmp / 'cfg.py', small_shapes,
                      hooks="dict(type='WaitForSignalHook', at_iter=3, "
                      'timeout=600)')
    work = tmp / 'work'
    run = Background([sys.executable, osp.join(REPO, 'tools', 'train.py'),
                      cfg, '--work-dir', str(work)], tmp,
                     env=subprocess_env())
    run.work, run.tmp = work, tmp
    yield run
    run.kill()


MIM = shutil.which('mim') or shutil.which(
    'mim', path=osp.dirname(sys.executable))


@pytest.fixture(scope='module')
def mim_failure(tmp_path_factory, toy_sd15):
    """``mim train`` of a config whose pipeline does not exist."""
    if MIM is None:
        pytest.skip('openmim is not installed')
    tmp = tmp_path_factory.mktemp('mim')
    run = Background(
        [MIM, 'train', 'diffkd', 'sd15_finetune_toy.py', '--work-dir',
         str(tmp / 'work'), '--cfg-options',
         'model.model=/nonexistent/pipeline'],
        tmp, cwd=tmp, env=dict(os.environ, OMP_NUM_THREADS='1'))
    yield run
    run.kill()


@pytest.fixture(scope='module')
def straight(tmp_path_factory, toy_sd15, small_shapes, sigterm_run,
             request):
    """The uninterrupted run every resumed one must reproduce (the
    subprocess scenarios are started first, to run alongside)."""
    if MIM is not None:
        request.getfixturevalue('mim_failure')
    tmp = tmp_path_factory.mktemp('straight')
    cfg = sd15_config(tmp / 'cfg.py', small_shapes)
    with one_thread():
        assert run_cli(cfg, tmp / 'work') == 0
    return str(tmp / 'work')


@pytest.mark.scenario
def test_sigterm_writes_checkpoint_exits_143_and_resumes(
        straight, sigterm_run, small_shapes):
    work, proc = sigterm_run.work, sigterm_run.proc
    deadline = time.monotonic() + 300
    while not (work / 'ready').exists():  # iteration 3 has run
        assert proc.poll() is None, sigterm_run.wait()
        assert time.monotonic() < deadline, 'training did not start'
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, _, err = sigterm_run.wait(timeout=120)
    assert proc.returncode == 143, f'{proc.returncode}\n{err[-3000:]}'
    assert 'received SIGTERM: stopped after iteration 3 of 6' in err
    ckpt = str(work / 'iter_3.pth')
    assert f'checkpoint {ckpt} written' in err
    assert last_checkpoint(work) == ckpt
    assert safe_torch_load(ckpt)['meta']['iter'] == 3
    assert not (work / 'final').exists()  # not a finished run
    assert not list(work.glob('.tmp-*'))

    resume(sd15_config(sigterm_run.tmp / 'cfg.py', small_shapes), work)
    assert_same_weights(work, straight)


@pytest.mark.scenario
def test_sigint_exits_130_and_resumes(straight, tmp_path, capfd,
                                      small_shapes):
    # A real SIGINT to this process at iteration 4, where the interval
    # checkpoint was just written (so it is not written twice).
    cfg = sd15_config(
        tmp_path / 'cfg.py', small_shapes,
        hooks=f"dict(type='SelfSignalHook', at_iter=4, "
        f'signum={int(signal.SIGINT)})')
    work = tmp_path / 'work'
    with one_thread():
        status = run_cli(cfg, work)
    err = capfd.readouterr().err
    assert status == 130, err[-3000:]
    assert 'received SIGINT: stopped after iteration 4 of 6' in err
    assert last_checkpoint(work) == str(work / 'iter_4.pth')
    assert not (work / 'final').exists()
    # the handler is gone: SIGINT is pytest's again
    assert signal.getsignal(signal.SIGINT) is not None
    assert 'SignalCheckpointHook' not in repr(
        signal.getsignal(signal.SIGINT))

    resume(sd15_config(tmp_path / 'cfg.py', small_shapes), work)
    assert_same_weights(work, straight)


@pytest.mark.scenario
def test_full_disk_keeps_previous_checkpoint(straight, tmp_path,
                                             monkeypatch, capfd,
                                             small_shapes):
    cfg = sd15_config(tmp_path / 'cfg.py', small_shapes)
    work = tmp_path / 'work'
    real_put = LocalBackend.put

    def put(self, obj, filepath):
        if osp.basename(str(filepath)) == '.tmp-iter_4.pth':
            with open(filepath, 'wb') as f:  # half of it, then the disk
                f.write(obj[:len(obj) // 2])  # is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC),
                          str(filepath))
        return real_put(self, obj, filepath)

    monkeypatch.setattr(LocalBackend, 'put', put)
    with one_thread():
        status = run_cli(cfg, work)
    monkeypatch.undo()
    err = capfd.readouterr().err
    previous = str(work / 'iter_2.pth')
    assert status == 1, err[-3000:]
    assert (f'no space left on device while writing {work}/iter_4.pth; '
            f'the previous checkpoint {previous} is intact') in err
    # max_keep_ckpts=1: mmengine would have deleted iter_2 before writing
    assert last_checkpoint(work) == previous
    assert safe_torch_load(previous)['meta']['iter'] == 2
    assert not (work / 'iter_4.pth').exists()
    assert not list(work.glob('.tmp-*'))

    (work / '.tmp-iter_9.pth').write_bytes(b'left by a killed run')
    resume(cfg, work)
    assert not list(work.glob('.tmp-*'))
    assert_same_weights(work, straight)


@pytest.mark.scenario
def test_nan_loss_stops_naming_iteration_and_term(tmp_path, toy_sdxl,
                                                  capfd, small_shapes):
    def config(nan_iters):
        path = tmp_path / f'cfg{len(nan_iters)}.py'
        path.write_text(f"""
_base_ = '{osp.join(REPO, 'configs', 'toy', 'ssd_1b_distill_uncached_toy.py')}'
{PROBES}
model = dict(teacher=dict(model='diffkd-toy/sdxl'),
             student=dict(model='diffkd-toy/sdxl'),
             feature_loss=dict(type='NaNAtIterL2Loss', iters={nan_iters}))
train_dataloader = dict(batch_size=2, dataset=dict(dataset='{small_shapes}'))
train_cfg = dict(max_iters=4)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
custom_hooks = [dict(type='DiffusersExportHook')]
""")
        return str(path)

    work = tmp_path / 'work'
    with one_thread():
        status = run_cli(config([3]), work)
    err = capfd.readouterr().err
    assert status == 1, err[-3000:]
    assert 'diffkd: non-finite loss at iteration 3: loss_kd_feat = nan' \
        in err
    assert last_checkpoint(work) == str(work / 'iter_2.pth')
    state = safe_torch_load(str(work / 'iter_2.pth'))['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values())
    assert not (work / 'iter_4.pth').exists()
    assert not (work / 'final').exists()
    # a run ended by an error leaves no signal handler of its own behind
    assert 'SignalCheckpointHook' not in repr(
        signal.getsignal(signal.SIGTERM))

    # Resumed without the fault: from iteration 2 to the end.
    with one_thread():
        assert run_cli(config([]), work, resume=True) == 0
    ckpt = safe_torch_load(str(work / 'iter_4.pth'))
    assert ckpt['meta']['iter'] == 4
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values())


@pytest.mark.scenario
def test_nan_loss_skip_mode_skips_the_step(tmp_path, toy_sd15, capfd,
                                           small_shapes):
    cfg = sd15_config(
        tmp_path / 'cfg.py', small_shapes, nonfinite='skip',
        # replaces the inherited min-SNR loss with its own arguments
        model="model = dict(loss=dict(_delete_=True, type='NaNAtIterL2Loss', "
        "iters=[3]))")
    work = tmp_path / 'work'
    with one_thread():
        assert run_cli(cfg, work) == 0
    out = capfd.readouterr()
    assert ('non-finite loss at iteration 3: loss = nan; optimizer step '
            'skipped (1 so far)') in out.out + out.err
    ckpt = safe_torch_load(str(work / f'iter_{MAX_ITERS}.pth'))
    assert ckpt['nonfinite_skipped'] == 1
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values())
    # Fused AdamW counted 5 steps in 6 iterations: one was not applied.
    steps = {float(s['step']) for s in ckpt['optimizer']['state'].values()}
    assert steps == {MAX_ITERS - 1.0}


@pytest.mark.scenario
@pytest.mark.parametrize('fused', [True, False])
def test_nonfinite_step_stays_out_of_weights(fused):
    """Fused optimizers skip on the device (no host sync); others after
    reading the flag on the host."""
    from diffkd.engine.optim import DiffusionOptimWrapper
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    wrapper = DiffusionOptimWrapper(
        optimizer=torch.optim.AdamW(model.parameters(), lr=0.1, fused=fused),
        clip_grad=dict(max_norm=1.0))
    assert wrapper.nonfinite_on_device == fused
    x = torch.randn(3, 4)
    wrapper.update_params(model(x).pow(2).mean())
    assert not wrapper.nonfinite_any
    before = [p.detach().clone() for p in model.parameters()]
    state = {k: v.clone() for k, v in
             wrapper.optimizer.state[model.weight].items()}
    wrapper.update_params(model(x).pow(2).mean() * float('nan'))
    assert wrapper.nonfinite_local and wrapper.nonfinite_any
    for p, q in zip(model.parameters(), before):
        assert torch.equal(p, q)
    for k, v in state.items():
        assert torch.equal(wrapper.optimizer.state[model.weight][k], v)
    assert wrapper.nonfinite_synced == (not fused)
    assert model.weight.grad is None or not model.weight.grad.any()
    wrapper.update_params(model(x).pow(2).mean())
    assert not torch.equal(model.weight, before[0])
    assert float(wrapper.optimizer.state[model.weight]['step']) == 2


@pytest.mark.scenario
def test_crash_during_export_keeps_previous_export(tmp_path):
    from diffkd.engine.hooks.export_hook import export_model

    class Model:
        pipeline_class_name = 'StableDiffusionPipeline'

        def __init__(self, value, fail=False):
            self.value, self.fail = value, fail

        def export_pretrained(self, out):
            os.makedirs(osp.join(out, 'unet'))
            with open(osp.join(out, 'unet', 'weights'), 'w') as f:
                f.write(self.value[:2])
                if self.fail:
                    raise OSError(errno.ENOSPC, 'No space left on device')
                f.write(self.value[2:])
            return {'parts': ['unet']}

    final = str(tmp_path / 'final')
    export_model(Model('first'), final, step=2)
    with pytest.raises(OSError):
        export_model(Model('second', fail=True), final, step=4)
    with open(osp.join(final, 'unet', 'weights')) as f:
        assert f.read() == 'first'
    with open(osp.join(final, 'export_info.json')) as f:
        assert json.load(f)['step'] == 2
    assert os.listdir(tmp_path) == ['final']  # no temporary left
    export_model(Model('third'), final, step=6)
    with open(osp.join(final, 'unet', 'weights')) as f:
        assert f.read() == 'third'


@pytest.mark.scenario
def test_failed_run_exits_1_with_the_error(tmp_path, toy_sd15, capfd):
    status = run_cli('toy/sd15_finetune_toy.py', tmp_path / 'work',
                     'model.model=/nonexistent/pipeline')
    err = capfd.readouterr().err
    assert status == 1
    assert 'Traceback' in err
    assert err.rstrip().splitlines()[-1].startswith(
        'diffkd: training failed: ')
    assert '/nonexistent/pipeline' in err.rstrip().splitlines()[-1]


@pytest.mark.scenario
def test_mim_train_failure_exits_nonzero(mim_failure):
    """openmim 0.3.9 runs tools/train.py with subprocess.check_call: a
    failed run raises CalledProcessError in mim, whose exit status is then
    1 whatever the training's was (the training's is in mim's last line)."""
    status, out, err = mim_failure.wait()
    assert status == 1, f'{status}\n{out[-3000:]}\n{err[-3000:]}'
    assert '/nonexistent/pipeline' in err
    assert 'returned non-zero exit status 1' in err
