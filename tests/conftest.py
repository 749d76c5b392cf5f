"""Shared fixtures: a private DIFFKD_HOME with the toy world built in it."""
import os
import os.path as osp
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# Nothing in the tests may reach a model hub.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')


@pytest.fixture(scope='session', autouse=True)
def diffkd_home(tmp_path_factory):
    home = os.environ.get('DIFFKD_TEST_HOME') or str(
        tmp_path_factory.mktemp('diffkd_home'))
    old = os.environ.get('DIFFKD_HOME')
    os.environ['DIFFKD_HOME'] = home
    yield home
    if old is None:
        os.environ.pop('DIFFKD_HOME', None)
    else:
        os.environ['DIFFKD_HOME'] = old


@pytest.fixture(scope='session')
def toy_sd15(diffkd_home):
    from diffkd.utils.hub import resolve_model_path
    return resolve_model_path('diffkd-toy/sd15')


@pytest.fixture(scope='session')
def toy_sdxl(diffkd_home):
    from diffkd.utils.hub import resolve_model_path
    return resolve_model_path('diffkd-toy/sdxl')


@pytest.fixture(scope='session')
def toy_shapes(diffkd_home):
    from diffkd.utils.hub import resolve_model_path
    return resolve_model_path('diffkd-toy/shapes')


def run_config(config, work_dir, *options, resume=None):
    """Run tools/train.py in-process and return the work dir."""
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import train
    finally:
        sys.path.pop(0)
    argv = [osp.join(REPO, 'configs', config), '--work-dir', str(work_dir)]
    # (an absolute config path is kept as it is by osp.join)
    if resume:
        argv += ['--resume'] + ([] if resume is True else [resume])
    if options:
        argv += ['--cfg-options', *options]
    train.main(argv)
    return str(work_dir)
