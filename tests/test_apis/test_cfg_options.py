"""``--cfg-options`` values are checked against the type of the config value
they replace (diffkd.apis.config.load_run_config)."""
import pytest

from diffkd.apis.config import load_run_config

CONFIG = '''
train_cfg = dict(max_iters=1000, by_epoch=False)
optim_wrapper = dict(optimizer=dict(lr=1e-4), loss_scale='dynamic')
model = dict(loss_weight=1, dtype='float16', unet=None)
custom_hooks = [dict(type='VisualizationHook', interval=250)]
env_cfg = dict(dist_cfg=dict(backend='nccl'))
visualizer = dict(type='Visualizer', vis_backends=[])
'''


@pytest.fixture
def path(tmp_path):
    p = tmp_path / 'cfg.py'
    p.write_text(CONFIG)
    return str(p)


@pytest.mark.parametrize('key,value,message', [
    ('train_cfg.max_iters', 'abc', 'train_cfg.max_iters=abc: expected an '
     "integer (the config's value is 1000)"),
    ('train_cfg.max_iters', True, 'train_cfg.max_iters=True: expected an '
     "integer (the config's value is 1000)"),
    ('optim_wrapper.optimizer.lr', 'fast', 'optim_wrapper.optimizer.lr=fast: '
     "expected a number (the config's value is 0.0001)"),
    ('train_cfg.by_epoch', 1, 'train_cfg.by_epoch=1: expected true or false '
     "(the config's value is False)"),
    ('model.dtype', ['float16', 'bfloat16'], 'model.dtype=float16,bfloat16: '
     "expected a single value (the config's value is 'float16')"),
    ('custom_hooks.0.interval', 'often', 'custom_hooks.0.interval=often: '
     "expected an integer (the config's value is 250)"),
])
def test_wrong_types_exit_naming_the_option(path, key, value, message):
    with pytest.raises(SystemExit) as info:
        load_run_config(path, cfg_options={key: value})
    assert info.value.code == f'error: --cfg-options {message}'


@pytest.mark.parametrize('key,value', [
    ('train_cfg.max_iters', 10),
    ('train_cfg.max_iters', 1e3),  # the loop takes an integral float
    ('optim_wrapper.optimizer.lr', 1),
    ('model.loss_weight', 0.5),  # configs write 1 for 1.0
    ('train_cfg.by_epoch', True),
    ('optim_wrapper.loss_scale', 512),  # a string option taking a number
    ('model.unet', 'some/folder'),  # None takes anything
    ('train_cfg.max_iters', None),
    ('train_cfg.val_interval', 'new keys are not judged'),
])
def test_values_of_a_fitting_type_are_merged(path, key, value):
    cfg = load_run_config(path, cfg_options={key: value})
    node = cfg
    for part in key.split('.'):
        node = node[part]
    assert node == value
