"""Shared fixtures: a DIFFKD_HOME with the toy world built in it."""
import os
import os.path as osp
import sys

import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

# Nothing in the tests may reach a model hub.
os.environ.setdefault('HF_HUB_OFFLINE', '1')
os.environ.setdefault('HF_DATASETS_OFFLINE', '1')
os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')


# pytest-xdist workers (README: ``pytest -n auto``) share the cores: one
# worker per core, each with its share of threads (and so do the training
# processes the tests start), instead of every worker using every core.
_WORKERS = int(os.environ.get('PYTEST_XDIST_WORKER_COUNT', '1'))
if _WORKERS > 1:
    _THREADS = str(max(1, (os.cpu_count() or 1) // _WORKERS))
    os.environ['OMP_NUM_THREADS'] = _THREADS
    os.environ['MKL_NUM_THREADS'] = _THREADS
    torch.set_num_threads(int(_THREADS))


@pytest.fixture(scope='session', autouse=True)
def diffkd_home(tmp_path_factory):
    """$DIFFKD_TEST_HOME or a fresh folder, with the whole toy world built
    once per test run (as `python tools/build_toy_world.py` does; seconds,
    the toy teachers' UNets are shipped). xdist workers share one folder:
    each asset is built by one of them under a file lock."""
    from diffkd.toy import build_toy_world
    home = os.environ.get('DIFFKD_TEST_HOME')
    if not home and _WORKERS > 1:
        # the run's temporary root, above every worker's own folder
        home = str(tmp_path_factory.getbasetemp().parent / 'diffkd_home')
    home = home or str(tmp_path_factory.mktemp('diffkd_home'))
    old = os.environ.get('DIFFKD_HOME')
    os.environ['DIFFKD_HOME'] = home
    build_toy_world(home=home)
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


def run_tool(rel, argv):
    """Run ``tools/<rel>``'s main(argv) in-process (loaded by path: a
    script named test.py must not shadow the standard library's test)."""
    import importlib.util
    path = osp.join(REPO, 'tools', rel)
    spec = importlib.util.spec_from_file_location(
        'diffkd_tool_' + osp.splitext(osp.basename(rel))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main([str(a) for a in argv])


# ------------------------------------------------ tiny metric networks
@pytest.fixture(scope='session')
def tiny_clip(tmp_path_factory, toy_sd15):
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel,
                              CLIPProcessor, CLIPTokenizer)
    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(toy_sd15, subfolder='tokenizer')
    cfg = CLIPConfig(
        text_config=dict(vocab_size=len(tok), hidden_size=32,
                         intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=77,
                         eos_token_id=tok.eos_token_id,
                         bos_token_id=tok.bos_token_id,
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(hidden_size=32, intermediate_size=64,
                           num_hidden_layers=2, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16)
    path = str(tmp_path_factory.mktemp('clip') / 'tiny-clip')
    CLIPModel(cfg).save_pretrained(path)
    CLIPProcessor(
        image_processor=CLIPImageProcessor(size={'shortest_edge': 32},
                                           crop_size=32),
        tokenizer=tok).save_pretrained(path)
    return path


class TinyFeatures(torch.nn.Module):
    """Stands in for Inception: uint8 NCHW -> 6 features per image."""

    def forward(self, x: torch.Tensor, return_features: bool = False):
        x = x.float() / 255
        return torch.cat([x.mean((2, 3)), x.std((2, 3))], 1)


@pytest.fixture
def tiny_inception(tmp_path):
    path = str(tmp_path / 'tiny-inception.pt')
    torch.jit.script(TinyFeatures()).save(path)
    return path


@pytest.fixture
def lpips_files(tmp_path):
    """LPIPS weight files in the published layouts, random values."""
    torch.manual_seed(0)
    from diffkd.evaluation.metrics import LPIPS
    net = LPIPS()
    alex = {}
    for conv, idx in zip(net.convs, (0, 3, 6, 8, 10)):
        alex[f'features.{idx}.weight'] = torch.randn_like(conv.weight) * .05
        alex[f'features.{idx}.bias'] = torch.zeros_like(conv.bias)
    lin = {f'lin{i}.model.1.weight': torch.rand_like(h.weight)
           for i, h in enumerate(net.heads)}
    torch.save(alex, tmp_path / 'alexnet.pth')
    torch.save(lin, tmp_path / 'alex.pth')
    return str(tmp_path / 'alexnet.pth'), str(tmp_path / 'alex.pth')


def pytest_configure(config):
    config.addinivalue_line(
        'markers', 'scenario: a reliability scenario (fault injection, '
        'distributed run, hostile input); counted in the summary line')
    config.addinivalue_line(
        'markers', 'slow: takes tens of seconds; run first, so that the '
        'parallel workers (pytest -n) are not left waiting on one of them '
        'at the end')


def pytest_collection_modifyitems(config, items):
    # Modules with a slow test first (each kept whole, for its module
    # fixtures): the workers then finish together instead of one waiting on
    # the other's last long test.
    slow = {item.module for item in items if item.get_closest_marker('slow')}
    items.sort(key=lambda item: item.module not in slow)
