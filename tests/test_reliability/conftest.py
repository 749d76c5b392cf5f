"""Helpers for the reliability tests and their summary line.

``pytest_terminal_summary`` prints ``reliability scenarios: N ran, P
passed, F failed`` for the tests marked ``scenario`` (in every file of this
folder).
"""
import os
import socket
import subprocess
import sys
from contextlib import contextmanager

import pytest
import torch

from tests.conftest import REPO

_outcomes = {}


def pytest_runtest_logreport(report):
    if 'scenario' not in report.keywords:
        return
    # A test counts once: failed if any phase failed, passed if its call
    # passed, skipped ones are not counted as run.
    if report.failed:
        _outcomes[report.nodeid] = 'failed'
    elif report.when == 'call' and report.passed:
        _outcomes.setdefault(report.nodeid, 'passed')


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _outcomes:
        return
    passed = sum(v == 'passed' for v in _outcomes.values())
    failed = sum(v == 'failed' for v in _outcomes.values())
    terminalreporter.write_line(
        f'reliability scenarios: {passed + failed} ran, {passed} passed, '
        f'{failed} failed')


def subprocess_env(**extra):
    """The environment of a training subprocess: this tree's diffkd (the
    installed one may be a stale copy) and one thread per process (several
    processes share the cores)."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def torchrun(args, nproc=2, timeout=300, module='torch.distributed.run'):
    """``torchrun --nproc_per_node N tools/train.py ARGS`` (or another
    launcher module, e.g. mim's torch.distributed.launch)."""
    cmd = [sys.executable, '-m', module, f'--nproc_per_node={nproc}',
           f'--master_port={free_port()}',
           os.path.join(REPO, 'tools', 'train.py'), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout, env=subprocess_env())


def run_cli(config, work_dir, *options, resume=None) -> int:
    """tools/train.py's ``run`` in-process: the exit status it would give
    (the message goes to stderr)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'diffkd_train_tool', os.path.join(REPO, 'tools', 'train.py'))
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    argv = [os.path.join(REPO, 'configs', config), '--work-dir',
            str(work_dir)]
    if resume:
        argv += ['--resume'] + ([] if resume is True else [str(resume)])
    if options:
        argv += ['--cfg-options', *options]
    return train.run(argv)


def dist_train(config, gpus, args, timeout=300):
    """``tools/dist_train.sh CONFIG GPUS ARGS`` with this interpreter."""
    env = subprocess_env(
        PORT=str(free_port()),
        PATH=os.path.dirname(sys.executable) + os.pathsep +
        os.environ.get('PATH', ''))
    cmd = ['bash', os.path.join(REPO, 'tools', 'dist_train.sh'),
           str(config), str(gpus), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def tail(res, n=4000):
    return f'exit {res.returncode}\n{res.stdout[-n:]}\n{res.stderr[-n:]}'


@pytest.fixture(scope='session')
def small_shapes(tmp_path_factory, toy_shapes):
    """The first 32 toy shapes as an imagefolder: loading the full toy set
    costs seconds per run (file globbing in ``datasets``), these runs need
    a few batches."""
    import json
    import shutil
    root = tmp_path_factory.mktemp('small_shapes')
    os.makedirs(root / 'images')
    with open(os.path.join(toy_shapes, 'metadata.jsonl')) as f:
        rows = [json.loads(line) for line in f][:32]
    for row in rows:
        shutil.copy(os.path.join(toy_shapes, row['file_name']),
                    root / row['file_name'])
    with open(root / 'metadata.jsonl', 'w') as f:
        f.writelines(json.dumps(row) + '\n' for row in rows)
    return str(root)


@contextmanager
def one_thread():
    """In-process runs on one thread, like the subprocesses (the machine's
    cores are shared; oversubscribed OpenMP threads are slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def single_thread():
    with one_thread():
        yield
