"""Hostile command-line overrides: a ``--cfg-options`` value of the wrong
type stops tools/train.py before anything is built, naming the option, the
type it needs and the config's value (docs/reliability.md, "Command-line
overrides")."""
import os.path as osp

import pytest
from mmengine.config import Config

from tests.conftest import REPO
from tests.test_reliability.conftest import run_cli

CONFIG = 'toy/sd15_finetune_toy.py'


def config_value(key):
    value = Config.fromfile(osp.join(REPO, 'configs', CONFIG))
    for part in key.split('.'):
        value = value[part]
    return value


@pytest.mark.scenario
@pytest.mark.parametrize('key,typed,expected', [
    ('train_cfg.max_iters', 'abc', 'an integer'),
    ('optim_wrapper.optimizer.lr', 'fast', 'a number'),
])
def test_wrong_type_names_option_type_and_config_value(tmp_path, capsys,
                                                       key, typed, expected):
    work = tmp_path / 'work'
    assert run_cli(CONFIG, work, f'{key}={typed}') == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == (
        f'error: --cfg-options {key}={typed}: expected {expected} (the '
        f"config's value is {config_value(key)!r})")
    assert 'Traceback' not in err
    assert not work.exists()  # stopped before the Runner
