"""Every shipped config parses, names registered types and has a unique
basename (``mim train diffkd NAME.py`` finds configs by basename)."""
import glob
import os.path as osp
from collections import Counter

import pytest
from mmengine.config import Config

import diffkd.datasets  # noqa: F401  (registers datasets and collates)
import diffkd.models  # noqa: F401
import diffkd.engine  # noqa: F401  (registers loops)
from diffkd.registry import DATASETS, FUNCTIONS, LOOPS, MODELS

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs')
CONFIGS = sorted(
    p for p in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if '_base_' not in p)


def test_basenames_are_unique():
    counts = Counter(osp.basename(p) for p in CONFIGS)
    assert [n for n, c in counts.items() if c > 1] == []


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.relpath(p, CONFIG_DIR) for p in CONFIGS])
def test_config_parses_and_names_registered_types(path):
    cfg = Config.fromfile(path)
    assert MODELS.get(cfg.model.type) is not None, cfg.model.type
    dataset = cfg.train_dataloader.dataset
    assert DATASETS.get(dataset.type) is not None, dataset.type
    collate = cfg.train_dataloader.get('collate_fn', {}).get('type')
    if collate and collate.startswith('diffkd.'):
        assert FUNCTIONS.get(collate[len('diffkd.'):]) is not None
    if dataset.type == 'DreamBoothDataset':
        assert collate == 'diffkd.dreambooth_collate'


def _pipelines(node):
    """Every transform list in a config: a dataset's ``pipeline``, also
    where it is nested (a latent cache's source, a wrapped dataset)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'pipeline' and isinstance(value, list):
                yield value
            else:
                yield from _pipelines(value)
    elif isinstance(node, (list, tuple)):
        for item in node:
            yield from _pipelines(item)


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.relpath(p, CONFIG_DIR) for p in CONFIGS])
def test_config_transforms_and_hooks_build(path):
    """Every transform and custom hook builds as the Runner builds it (a
    name diffkd's renamed classes had stops here with the new name)."""
    from mmengine.dataset import Compose
    from mmengine.registry import HOOKS, DefaultScope
    cfg = Config.fromfile(path)
    pipelines = list(_pipelines(cfg.train_dataloader))
    assert pipelines, 'no transform pipeline found'
    with DefaultScope.overwrite_default_scope('diffkd'):
        for pipeline in pipelines:
            Compose(pipeline)
        for hook in cfg.get('custom_hooks', []):
            HOOKS.build(hook)


@pytest.mark.parametrize(
    'path', CONFIGS, ids=[osp.relpath(p, CONFIG_DIR) for p in CONFIGS])
def test_config_names_its_optimizer_step_and_loops(path):
    """The optimizer step is the config's (DiffusionOptimWrapper: precision,
    clipping, non-finite losses; only trainable parameters), so
    tools/train.py has nothing to add; loops are registered ones."""
    cfg = Config.fromfile(path)
    wrapper = cfg.optim_wrapper
    if wrapper.type != 'DeepSpeedOptimWrapper':  # DeepSpeed steps itself
        assert wrapper.type == 'DiffusionOptimWrapper', wrapper.type
        assert wrapper.constructor == \
            'TrainableParamsOptimWrapperConstructor'
    for key in ('train_cfg', 'val_cfg', 'test_cfg'):
        loop = (cfg.get(key) or {}).get('type')
        assert loop is None or LOOPS.get(loop) is not None, (key, loop)
    if cfg.get('val_dataloader') is not None:
        assert cfg.val_evaluator.type == 'HeldOutLoss'
        assert cfg.train_cfg.val_interval > 0


DISTILL = [p for p in CONFIGS
           if Config.fromfile(p).model.type == 'DiffusionDistiller']


@pytest.mark.parametrize(
    'path', DISTILL, ids=[osp.relpath(p, CONFIG_DIR) for p in DISTILL])
def test_distillation_model_builds(path, toy_sd15, toy_sdxl):
    """Every recipe's student, module map and feature pairs, on the
    untrained toy pipeline of the config's family (same topology)."""
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(path)
    xl = cfg.model.student.type == 'StableDiffusionXL'
    toy = toy_sdxl if xl else toy_sd15
    cfg.model.student.model = cfg.model.teacher.model = toy
    cfg.model.teacher.pop('dtype', None)
    cfg.model.teacher.pop('subfolder', None)  # a bare UNet folder
    if cfg.model.get('student_init') == 'pretrained':
        cfg.model.student_init = 'teacher'
        cfg.model.student.pop('unet', None)
    # LoRA files other runs write (tests/test_models/test_lora_transplant.py
    # loads them)
    cfg.model.teacher.pop('lora', None)
    (cfg.model.student.get('lora') or {}).pop('weights', None)
    with DefaultScope.overwrite_default_scope('diffkd'):
        model = MODELS.build(cfg.model)
    features = cfg.model.get('features', 'bk_sdm')
    assert bool(model.pairs) == bool(features or cfg.model.get('pairs'))
