"""A scheduler's cancel: SIGTERM to the whole process group (``scancel``,
``kill -TERM -PGID``), dataloader workers included, with persistent
workers as the real configs have. The run must still finish its
iteration, write its checkpoint, exit 143 and leave no process behind;
a second signal must still stop the workers at once."""
import glob
import operator
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch
from mmengine.runner import Runner
from torch.utils.data import Dataset, get_worker_info

from diffkd.engine.checkpoint import safe_torch_load
from diffkd.engine.hooks import SignalCheckpointHook
from tests.conftest import REPO
from tests.test_reliability.conftest import (one_thread, run_cli,
                                             subprocess_env)
from tests.test_reliability.test_faults import (MAX_ITERS, PROBES,
                                                Background,
                                                assert_same_weights,
                                                last_checkpoint)

pytestmark = pytest.mark.skipif(
    not osp.isdir('/proc') or not hasattr(signal, 'sigwaitinfo'),
    reason='Linux: process groups, sigwaitinfo, /proc')


def config(path, data, hooks=''):
    """The toy SD 1.5 fine-tune with two persistent workers (they draw the
    random crops and flips), batch 1, a checkpoint every 2 iterations."""
    path.write_text(f"""
_base_ = '{osp.join(REPO, 'configs', 'toy', 'sd15_finetune_toy.py')}'
{PROBES}
train_dataloader = dict(batch_size=1, num_workers=2, persistent_workers=True,
                        dataset=dict(dataset='{data}'))
train_cfg = dict(max_iters={MAX_ITERS})
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=2))
custom_hooks = [{hooks}]
""")
    return str(path)


def group(pgid):
    """Processes of the group that have not exited (zombies have)."""
    pids = []
    for stat in glob.glob('/proc/[0-9]*/stat'):
        try:
            with open(stat) as f:
                state, _, pgrp = f.read().rsplit(')', 1)[1].split()[:3]
        except (OSError, ValueError):
            continue
        if int(pgrp) == pgid and state != 'Z':
            pids.append(int(stat.split('/')[2]))
    return pids


def start(tmp, data):
    """tools/train.py in a process group of its own, waiting after
    iteration 3 for a signal."""
    cfg = config(tmp / 'cfg.py', data,
                 hooks="dict(type='WaitForSignalHook', at_iter=3, "
                 'timeout=600)')
    run = Background([sys.executable, osp.join(REPO, 'tools', 'train.py'),
                      cfg, '--work-dir', str(tmp / 'work')], tmp,
                     env=subprocess_env(), start_new_session=True)
    run.work, run.cfg = tmp / 'work', cfg
    return run


def wait_for(condition, run, what, timeout=300):
    deadline = time.monotonic() + timeout
    while not condition():
        assert run.proc.poll() is None, run.wait()
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def wait_gone(pgid, timeout=30):
    deadline = time.monotonic() + timeout
    while group(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return group(pgid)


def state(pid):
    """'R', 'S', ... while running; 'Z' or None once exited."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0]
    except OSError:
        return None


def wait_exited(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while state(pid) not in ('Z', None) and time.monotonic() < deadline:
        time.sleep(0.02)
    return state(pid) in ('Z', None)


def sigterm_pending(pid):
    with open(f'/proc/{pid}/status') as f:
        mask = next(line for line in f if line.startswith('ShdPnd:'))
    return bool(int(mask.split()[1], 16) & 1 << (signal.SIGTERM - 1))


class WorkerProbe(Dataset):
    """What each worker was set up with."""

    def __len__(self):
        return 16

    def __getitem__(self, index):
        return dict(
            worker=get_worker_info().id, pid=os.getpid(),
            seed=torch.initial_seed(), tag=os.environ.get('PROBE_TAG'),
            sigterm_blocked=signal.SIGTERM in signal.pthread_sigmask(
                signal.SIG_BLOCK, []))


def tag_worker(worker_id, tag):
    os.environ['PROBE_TAG'] = f'{tag}{worker_id}'


def probe_loader(**cfg):
    """Built by mmengine's Runner.build_dataloader as a run builds it."""
    return Runner.build_dataloader(
        dict(dataset=WorkerProbe(),
             sampler=dict(type='DefaultSampler', shuffle=False),
             batch_size=1, num_workers=2,
             collate_fn=operator.itemgetter(0), **cfg), seed=7)


def test_shielded_workers_keep_mmengine_seeding_and_own_init_fn():
    hook = SignalCheckpointHook()
    seeded = probe_loader()
    hook.shield_workers(seeded)
    rows = list(seeded)
    # mmengine's worker seeding: seed + worker id
    assert {(r['worker'], r['seed']) for r in rows} == {(0, 7), (1, 8)}
    assert all(r['sigterm_blocked'] for r in rows)

    own = probe_loader(worker_init_fn=dict(type=tag_worker, tag='w'))
    hook.shield_workers(own)
    rows = list(own)
    assert {(r['worker'], r['tag']) for r in rows} == {(0, 'w0'), (1, 'w1')}
    assert all(r['sigterm_blocked'] for r in rows)

    off = probe_loader()
    SignalCheckpointHook(signals=[]).shield_workers(off)
    assert not any(r['sigterm_blocked'] for r in off)


def test_shielded_worker_outlives_one_sigterm_from_elsewhere():
    hook = SignalCheckpointHook()
    loader = probe_loader(persistent_workers=True)
    hook.shield_workers(loader)
    shielded = loader.worker_init_fn
    hook.shield_workers(loader)
    assert loader.worker_init_fn is shielded  # wrapped once
    batches = iter(loader)
    pids = {r['worker']: r['pid'] for r in (next(batches), next(batches))}

    def kill(pid):  # from another process, as a scheduler's cancel
        subprocess.run([sys.executable, '-c',
                        f'import os; os.kill({pid}, {int(signal.SIGTERM)})'],
                       check=True)

    kill(pids[0])
    deadline = time.monotonic() + 10
    while sigterm_pending(pids[0]) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not sigterm_pending(pids[0]), 'the worker never took it'
    # both workers go on serving batches asked for after the signal
    later = [next(batches) for _ in range(8)]
    assert {r['pid'] for r in later} == set(pids.values())
    # a second signal ends the worker at once
    kill(pids[0])
    assert wait_exited(pids[0])
    # so does one from its main process (how it ends its workers at exit)
    os.kill(pids[1], signal.SIGTERM)
    assert wait_exited(pids[1])
    del batches


@pytest.fixture(scope='module')
def group_run(tmp_path_factory, toy_sd15, small_shapes):
    """Started first, to run beside the reference."""
    run = start(tmp_path_factory.mktemp('group'), small_shapes)
    yield run
    if run.proc.poll() is None:
        os.killpg(run.proc.pid, signal.SIGKILL)
        run.wait()


@pytest.fixture(scope='module')
def straight(tmp_path_factory, small_shapes, group_run):
    """The uninterrupted run, with the same workers."""
    tmp = tmp_path_factory.mktemp('group_straight')
    with one_thread():
        assert run_cli(config(tmp / 'cfg.py', small_shapes),
                       tmp / 'work') == 0
    return str(tmp / 'work')


@pytest.mark.scenario
def test_group_sigterm_checkpoints_exits_143_and_resumes(group_run,
                                                        straight):
    run = group_run
    work, pgid = run.work, run.proc.pid
    wait_for((work / 'ready').exists, run, 'training did not start')
    assert len(group(pgid)) >= 3, 'the main process and its 2 workers'
    os.killpg(pgid, signal.SIGTERM)
    status, _, err = run.wait(timeout=120)
    assert status == 143, f'{status}\n{err[-3000:]}'
    assert 'received SIGTERM: stopped after iteration 3 of 6' in err
    assert 'DataLoader worker' not in err
    ckpt = str(work / 'iter_3.pth')
    assert last_checkpoint(work) == ckpt
    assert safe_torch_load(ckpt)['meta']['iter'] == 3
    assert not list(work.glob('.tmp-*'))
    # the workers exited with the main process
    assert wait_gone(pgid) == []

    with one_thread():
        assert run_cli(run.cfg, work, resume=True) == 0
    assert_same_weights(work, straight)
