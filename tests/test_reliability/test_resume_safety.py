"""Resuming is safe and honest (docs/reliability.md, "Trust model" and
"Resume"): a checkpoint is read as data and never runs code, auto-resume
refuses when there is nothing to resume, a moved work dir resumes, another
model's checkpoint is named as such, and ``max_keep_ckpts`` holds across
resumes. Toy SD 1.5 fine-tunes of 6 iterations, a checkpoint every 2."""
import logging
import os
import re
import shutil
import types

import pytest
import torch
from mmengine.config import Config
from mmengine.logging.history_buffer import HistoryBuffer

from diffkd.engine.checkpoint import (SAFE_GLOBALS, message_hub_from_plain,
                                      safe_torch_load)
from tests.conftest import REPO
from tests.test_reliability.conftest import one_thread, run_cli
from tests.test_reliability.test_faults import (MAX_ITERS,
                                                assert_same_weights,
                                                last_checkpoint, resume,
                                                sd15_config)

PART = 2  # iterations before the interruption


@pytest.fixture(scope='module')
def runs(tmp_path_factory, toy_sd15, small_shapes):
    """A straight run of MAX_ITERS iterations and one stopped after PART
    (its ``iter_2.pth`` is what the scenarios resume)."""
    tmp = tmp_path_factory.mktemp('resume_safety')
    cfg = sd15_config(tmp / 'cfg.py', small_shapes)
    with one_thread():
        assert run_cli(cfg, tmp / 'straight') == 0
        assert run_cli(cfg, tmp / 'part', f'train_cfg.max_iters={PART}') == 0
    return types.SimpleNamespace(cfg=cfg, straight=str(tmp / 'straight'),
                                 part=tmp / 'part', data=small_shapes)


def copy_part(runs, dest):
    """A copy of the interrupted run's work dir, its last_checkpoint
    pointing into the copy."""
    shutil.copytree(runs.part, dest)
    (dest / 'last_checkpoint').write_text(str(dest / f'iter_{PART}.pth'))
    return dest


def checkpoints(work):
    return sorted(p.name for p in work.glob('iter_*.pth'))


# ------------------------------------------- a. code in meta['config']
@pytest.mark.scenario
@pytest.mark.parametrize('how,runner', [('path', 'DiffusionRunner'),
                                        ('auto', 'DiffusionRunner'),
                                        ('auto', 'DiffusionFlexibleRunner')])
def test_config_in_a_checkpoint_is_never_executed(runs, tmp_path, capfd,
                                                  how, runner):
    marker = tmp_path / 'marker'
    code = f"import os\nopen({str(marker)!r}, 'w').close()\n"
    # The payload is live: mmengine 0.10's Runner.resume hands
    # meta['config'] to Config.fromstring, which runs it.
    Config.fromstring(code, file_format='.py')
    assert marker.exists()
    marker.unlink()

    work = copy_part(runs, tmp_path / 'work')
    ckpt = safe_torch_load(str(work / f'iter_{PART}.pth'))
    ckpt['meta']['config'] = code  # only tensors and strings in the file
    target = work / f'iter_{PART}.pth' if how == 'auto' \
        else tmp_path / 'given.pth'
    torch.save(ckpt, target)
    with one_thread():
        status = run_cli(runs.cfg, work, f'runner_type={runner}',
                         resume=True if how == 'auto' else target)
    err = capfd.readouterr()
    assert status == 0, err.err[-3000:]
    assert not marker.exists()
    assert f"{target}: meta['config'] ignored" in err.out + err.err
    assert_same_weights(work, runs.straight)


# ---------------------------------- b. auto-resume with nothing to resume
@pytest.mark.scenario
@pytest.mark.parametrize('left', ['nothing', 'interrupted first write'])
def test_auto_resume_without_a_complete_checkpoint_refuses(runs, tmp_path,
                                                           capfd, left):
    work = tmp_path / 'work'
    work.mkdir()
    if left != 'nothing':  # killed while writing its first checkpoint
        data = (runs.part / f'iter_{PART}.pth').read_bytes()
        (work / f'.tmp-iter_{PART}.pth').write_bytes(data[:len(data) // 2])
    status = run_cli(runs.cfg, work, resume=True)
    err = capfd.readouterr().err
    assert status == 1, err[-3000:]
    last = err.rstrip().splitlines()[-1]
    assert (f'cannot resume: no complete checkpoint in {work} (it has no '
            'last_checkpoint') in last, last
    assert 'To start over, run without --resume' in last
    if left != 'nothing':
        assert f'.tmp-iter_{PART}.pth was left by a run stopped while ' \
            'writing its checkpoint' in last
    # it did not train from scratch instead
    assert checkpoints(work) == []
    assert not (work / 'final').exists()


# ------------------------------------------------- c. a moved work dir
@pytest.mark.scenario
def test_moved_work_dir_resumes(runs, tmp_path, capfd):
    before = copy_part(runs, tmp_path / 'before')
    work = tmp_path / 'elsewhere' / 'work'
    work.parent.mkdir()
    shutil.move(str(before), str(work))
    assert last_checkpoint(work) == str(before / f'iter_{PART}.pth')
    resume(runs.cfg, work)
    out = capfd.readouterr()
    assert (f'last_checkpoint names {before}/iter_{PART}.pth, which does '
            f'not exist; resuming from {work}/iter_{PART}.pth') in \
        out.out + out.err
    assert_same_weights(work, runs.straight)
    assert last_checkpoint(work) == str(work / f'iter_{MAX_ITERS}.pth')


# ----------------------------------------- d. another model's checkpoint
@pytest.mark.scenario
def test_another_models_checkpoint_is_named_before_loading(runs, tmp_path,
                                                           toy_sdxl, capfd):
    work = copy_part(runs, tmp_path / 'work')
    config = os.path.join(REPO, 'configs', 'toy', 'sdxl_finetune_toy.py')
    status = run_cli(config, work,
                     f'train_dataloader.dataset.dataset={runs.data}',
                     'train_dataloader.batch_size=2', resume=True)
    err = capfd.readouterr().err
    assert status == 1, err[-3000:]
    ckpt = str(work / f'iter_{PART}.pth')
    last = err.rstrip().splitlines()[-1]
    assert last.startswith(
        'diffkd: training failed: CheckpointMismatchError: checkpoint '
        f'{ckpt} does not fit the model of {config} '), last
    assert 'parameter group' not in err  # not the optimizer's failure
    # The named shapes are the checkpoint's and the SDXL UNet's.
    state = safe_torch_load(ckpt)['state_dict']
    shapes = re.findall(r'(unet\.\S+) is (\([\d, ]+\)) in the checkpoint, '
                        r'(\([\d, ]+\)) in the model', last)
    assert shapes, last
    for key, theirs, ours in shapes:
        assert str(tuple(state[key].shape)) == theirs != ours
    assert 'missing from the checkpoint: unet.' in last
    assert not (work / f'iter_{PART + 2}.pth').exists()


# ------------------------------------------- e. max_keep_ckpts on resume
@pytest.mark.scenario
def test_resumed_run_keeps_max_keep_ckpts(runs, tmp_path):
    opts = ('default_hooks.checkpoint.interval=1',
            'default_hooks.checkpoint.max_keep_ckpts=2')
    work = tmp_path / 'work'
    with one_thread():
        assert run_cli(runs.cfg, work, *opts, 'train_cfg.max_iters=3') == 0
        assert checkpoints(work) == ['iter_2.pth', 'iter_3.pth']
        # iter_3.pth was written before its own step joined the kept list:
        # a resume that trusted that list never deleted iter_3.pth.
        assert run_cli(runs.cfg, work, *opts, resume=True) == 0
    assert checkpoints(work) == ['iter_5.pth', 'iter_6.pth']


# ------------------------------- checkpoints written before plain data
@pytest.mark.scenario
def test_checkpoint_with_history_buffers_still_resumes(runs, tmp_path,
                                                       monkeypatch):
    work = copy_part(runs, tmp_path / 'work')
    path = work / f'iter_{PART}.pth'
    # Today's message hub is plain data: no mmengine class is unpickled.
    numpy_only = [g for g in SAFE_GLOBALS if g is not HistoryBuffer]
    with torch.serialization.safe_globals(numpy_only):
        ckpt = torch.load(path, weights_only=True)
    assert ckpt['message_hub']['log_scalars']

    # Earlier diffkd saved HistoryBuffer objects, their statistics methods
    # left out; such a file must still resume.
    def old_getstate(self):
        return {k: v for k, v in vars(self).items()
                if k != 'statistics_methods'}

    ckpt['message_hub'] = message_hub_from_plain(ckpt['message_hub'])
    monkeypatch.setattr(HistoryBuffer, '__getstate__', old_getstate)
    torch.save(ckpt, path)
    monkeypatch.undo()
    with pytest.raises(Exception):
        with torch.serialization.safe_globals(numpy_only):
            torch.load(path, weights_only=True)
    resume(runs.cfg, work)
    assert_same_weights(work, runs.straight)


# ------------------------------------------- load_from: weights only
@pytest.mark.scenario
def test_load_from_reports_missing_trainable_weights_only(tmp_path,
                                                          toy_sd15):
    from mmengine.runner.checkpoint import load_state_dict

    from diffkd.engine import DiffusionRunner
    path = str(tmp_path / 'weights.pth')
    runner = DiffusionRunner(
        model=dict(type='DiffusionDistiller',
                   student=dict(type='StableDiffusion', model=toy_sd15),
                   teacher=dict(model=toy_sd15)),
        work_dir=str(tmp_path / 'work'), default_scope='diffkd',
        load_from=path)
    lines = []

    class Collect(logging.Handler):

        def emit(self, record):
            lines.append(record.getMessage())

    runner.logger.addHandler(Collect(level=logging.WARNING))
    model = runner.model
    state = model.state_dict()  # the trained student only
    assert state and all(k.startswith('student.unet.') for k in state)
    # Control: mmengine's loader lists every frozen weight as missing.
    load_state_dict(model, state, logger=runner.logger)
    assert any('missing keys' in m and 'student.vae.' in m for m in lines)
    lines.clear()

    torch.save(dict(state_dict=state, meta=dict(iter=2)), path)
    runner.load_or_resume()  # load_from: weights only
    assert not [m for m in lines if 'lacks' in m or 'missing' in m], lines

    gone = 'student.unet.conv_in.bias'
    with torch.no_grad():
        model.student.unet.conv_in.bias.fill_(7.0)
    torch.save(dict(state_dict={k: v for k, v in state.items()
                                if k != gone}), path)
    runner.load_checkpoint(path)
    assert [m for m in lines if 'lacks 1 trainable weight(s)' in m
            and gone in m], lines
    assert torch.all(model.student.unet.conv_in.bias == 7.0)
