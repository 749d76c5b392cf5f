"""diffkd.apis.check_config: the pre-flight check tools/train.py and
tools/test.py run before a Runner is built."""
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

from diffkd.apis import check_config
from diffkd.apis.preflight import accepted_keys
from diffkd.registry import ConfigKeyError, UnknownTypeError
from tests.conftest import REPO
from tests.test_reliability.conftest import run_cli

CONFIGS = sorted(
    p for p in glob.glob(osp.join(REPO, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)
DISTILL = osp.join(REPO, 'configs', 'toy', 'ssd_1b_distill_toy.py')


def config(path=DISTILL, launcher='none', **options) -> Config:
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    cfg.merge_from_dict(options)
    return cfg


def unknown_type(cfg) -> str:
    with pytest.raises(UnknownTypeError) as info:
        check_config(cfg)
    assert isinstance(info.value, KeyError)
    return str(info.value)


def unknown_key(cfg) -> str:
    with pytest.raises(ConfigKeyError) as info:
        check_config(cfg)
    assert isinstance(info.value, TypeError)
    return str(info.value)


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.relpath(p, REPO) for p in CONFIGS])
def test_every_shipped_config_passes(path):
    # As a distributed run: the model wrapper is looked up too.
    check_config(config(path, launcher='pytorch'))


def test_nothing_is_built_or_loaded():
    # Names and keys only: a model path that does not exist is no concern.
    check_config(config(**{'model.student.model': '/no/such/model',
                           'model.teacher.model': '/no/such/model'}))


def test_unknown_type_names_key_path_and_closest_names():
    msg = unknown_type(config(**{'model.student.type': 'StableDifusionXL'}))
    assert msg == (
        "model type 'StableDifusionXL' is not registered (scope 'diffkd'); "
        "did you mean 'StableDiffusionXL' or 'StableDiffusion'? "
        '(config key model.student.type)')
    # A recipe is a compression, a loss a model.
    assert unknown_type(config(**{'model.compression.type': 'SSD1b'})) == (
        "compression type 'SSD1b' is not registered (scope 'diffkd'); did "
        "you mean 'SSD1B'? (config key model.compression.type)")
    msg = unknown_type(config(**{'model.task_loss': dict(type='L2Los')}))
    assert msg.endswith("did you mean 'L2Loss' or 'SNRL2Loss'? "
                        '(config key model.task_loss.type)'), msg


@pytest.mark.parametrize('options,key,head', [
    ({'runner_type': 'FlexibleRuner'}, 'runner_type',
     "runner type 'FlexibleRuner' is not registered (scope 'diffkd'); did "
     "you mean 'FlexibleRunner' or 'DiffusionFlexibleRunner'?"),
    ({'optim_wrapper.constructor': 'TrainableParamsOptimWrapperConstuctor'},
     'optim_wrapper.constructor',
     "optimizer wrapper constructor type "
     "'TrainableParamsOptimWrapperConstuctor' is not registered (scope "
     "'diffkd'); did you mean 'TrainableParamsOptimWrapperConstructor'"),
    ({'train_dataloader.dataset.source.pipeline.1.type':
      'RandomCropWithCoord'},
     'train_dataloader.dataset.source.pipeline[1].type',
     "transform type 'RandomCropWithCoord' is not registered (scope 'diffkd'); did "
     "you mean 'RandomCropWithCoords'"),
    ({'param_scheduler.0.type': 'CosineAnealingLR'},
     'param_scheduler[0].type',
     "parameter scheduler type 'CosineAnealingLR' is not registered"),
    ({'val_evaluator': [dict(type='CLIPScor')]}, 'val_evaluator[0].type',
     "metric type 'CLIPScor' is not registered (scope 'diffkd'); did you "
     "mean 'CLIPScore'?"),
    ({'visualizer.vis_backends': [dict(type='LocalVisBackand')]},
     'visualizer.vis_backends[0].type',
     "vis_backend type 'LocalVisBackand' is not registered"),
])
def test_every_part_the_runner_builds_is_resolved(options, key, head):
    msg = unknown_type(config(**options))
    assert msg.startswith(head), msg
    assert msg.endswith(f'(config key {key})'), msg


def test_a_nested_dataset_part_is_resolved():
    cached = osp.join(REPO, 'configs', 'toy', 'ssd_1b_distill_cached_toy.py')
    msg = unknown_type(config(cached, **{
        'train_dataloader.dataset.encoder.type': 'StableDifusionXL'}))
    assert "did you mean 'StableDiffusionXL'" in msg
    assert msg.endswith('(config key train_dataloader.dataset.encoder.type)')


def test_missing_type_lists_what_can_be_built():
    msg = unknown_type(config(custom_hooks=[dict(interval=3)]))
    assert msg.startswith('custom_hooks[0] names no hook to build: give it '
                          'type=..., one of '), msg
    assert 'SafeCheckpointHook' in msg
    assert msg.endswith('(config key custom_hooks[0].type)')


@pytest.mark.parametrize('options,message', [
    ({'custom_hooks': [dict(type='SafeCheckpointHook', intervall=10)]},
     "SafeCheckpointHook got unknown config key 'intervall' (did you mean "
     "'interval'?); SafeCheckpointHook takes: interval, by_epoch, "),
    ({'optim_wrapper.optimizer.beta': 0.9},
     "AdamW got unknown config key 'beta' (did you mean 'betas'?); AdamW "
     'takes: params, lr, betas, '),
    ({'train_cfg.max_iter': 10},
     "IterBasedTrainLoop got unknown config key 'max_iter'"),
    ({'model.task_loss': dict(type='L2Loss', wieght=1.0)},
     "L2Loss got unknown config key 'wieght' (did you mean 'loss_weight'?); "
     'L2Loss takes: loss_weight'),
    ({'log_processor.window': 3},
     "DiffusionLogProcessor got unknown config key 'window' (did you mean "
     "'window_size'?); DiffusionLogProcessor takes: console_exclude, "
     'window_size, '),
    # **kwargs handed on to the bases (super().__init__ and
    # OptimWrapper.__init__(self, ...)): their parameters count.
    ({'optim_wrapper.accumulative_count': 2},
     "DiffusionOptimWrapper got unknown config key 'accumulative_count' (did "
     "you mean 'accumulative_counts'?); DiffusionOptimWrapper takes: "
     'optimizer, dtype, loss_scale, nonfinite, max_skipped, use_fsdp, '),
    ({'optim_wrapper.type': 'AutocastOptimWrapper',
      'optim_wrapper.accumulative_count': 2},
     "AutocastOptimWrapper got unknown config key 'accumulative_count' (did "
     "you mean 'accumulative_counts'?)"),
])
def test_unknown_keys_get_the_closest_parameters(options, message):
    msg = unknown_key(config(**options))
    assert msg.startswith(message), msg
    bad = re.search(r"unknown config key '(\w+)'", msg).group(1)
    assert re.search(rf'\(config key \S+\.{bad}\)$', msg), msg


# ------------------------------------------------- classes with **kwargs
class Base:

    def __init__(self, size=1, colour='red'):
        self.size, self.colour = size, colour


class Forwards(Base):

    def __init__(self, shape='circle', **kwargs):
        self.fill = kwargs.pop('fill', None)
        if 'colour' not in kwargs:
            kwargs['colour'] = 'blue'
        super().__init__(**kwargs)


class Keeps(Base):
    """Its **kwargs go somewhere else: any key may be right."""

    def __init__(self, shape='circle', **kwargs):
        super().__init__()
        self.options = kwargs


def test_keys_of_kwargs_classes_only_where_the_signature_tells():
    assert set(accepted_keys(Forwards)) == {'shape', 'fill', 'colour', 'size'}
    assert accepted_keys(Keeps) is None
    assert accepted_keys(Base) == ['size', 'colour']
    msg = unknown_key(config(custom_hooks=[dict(type=Forwards, szie=2)]))
    assert msg.startswith("Forwards got unknown config key 'szie' (did you "
                          "mean 'size'?)"), msg
    check_config(config(custom_hooks=[dict(type=Forwards, fill=1, size=2)]))
    check_config(config(custom_hooks=[dict(type=Keeps, anything=2)]))


# -------------------------------- names mmengine looks up outside the scope
def test_names_mmengine_looks_up_outside_the_scope_need_the_prefix():
    fsdp = osp.join(REPO, 'configs', 'toy', 'ssd_1b_distill_fsdp_toy.py')
    assert unknown_type(config(fsdp, **{
        'strategy.type': 'DiffusionFSDPStrategy'})) == (
            "strategy type 'DiffusionFSDPStrategy' is registered in scope "
            "'diffkd', but mmengine looks strategies up outside the default "
            "scope: write type='diffkd.DiffusionFSDPStrategy' (config key "
            'strategy.type)')
    lora = osp.join(REPO, 'configs', 'toy', 'sd15_dreambooth_lora_toy.py')
    msg = unknown_type(config(
        lora, **{'train_dataloader.collate_fn.type': 'dreambooth_collate'}))
    assert "write type='diffkd.dreambooth_collate'" in msg
    # The model wrapper matters to distributed runs only.
    wrapper = dict(model_wrapper_cfg=dict(type='DiffusionDDP'))
    assert "write type='diffkd.DiffusionDDP'" in unknown_type(
        config(launcher='pytorch', **wrapper))
    check_config(config(launcher='none', **wrapper))


# ------------------------------------------------------- through the tools
def test_train_tool_checks_before_building(tmp_path, capsys):
    work = tmp_path / 'work'
    code = run_cli('toy/sd15_finetune_toy.py', work,
                   'default_hooks.checkpoint.intervall=10')
    assert code == 1
    err = capsys.readouterr().err
    assert "diffkd: training failed: ConfigKeyError: SafeCheckpointHook got " \
        "unknown config key 'intervall'" in err, err[-2000:]
    assert err.rstrip().endswith(
        '(config key default_hooks.checkpoint.intervall)')
    assert not work.exists()  # the Runner was never built


def test_test_tool_checks_before_building(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'diffkd_test_tool', osp.join(REPO, 'tools', 'test.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    work = tmp_path / 'work'
    with pytest.raises(ConfigKeyError,
                       match=r"^DiffusionTestLoop got unknown config key "
                       r"'teachr' \(did you mean 'teacher'\?\).*\(config key "
                       r'test_cfg.teachr\)$'):
        tool.main([osp.join(REPO, 'configs', 'toy', 'sd15_finetune_toy.py'),
                   '--work-dir', str(work), '--cfg-options',
                   'test_cfg.teachr=True'])
    assert not work.exists()
