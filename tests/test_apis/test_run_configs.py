"""The flag-to-config mapping of tools/train.py and tools/test.py, as the
package functions both tools (and benchmark_train) call."""
import os.path as osp

import pytest

from diffkd.apis.config import (evaluation_config, resolve_checkpoint,
                                train_config)
from tests.conftest import REPO

TOY = osp.join(REPO, 'configs', 'toy', 'sd15_finetune_toy.py')


def test_train_config_maps_amp_and_resume(tmp_path):
    cfg = train_config(TOY, str(tmp_path), {'train_cfg.max_iters': 3})
    assert cfg.work_dir == str(tmp_path) and cfg.train_cfg.max_iters == 3
    assert cfg.optim_wrapper.get('dtype') is None
    assert not cfg.get('resume')
    assert train_config(TOY, amp=True).optim_wrapper.dtype == 'auto'
    # a config's own dtype is kept
    kept = train_config(TOY, cfg_options={'optim_wrapper.dtype': 'float16'},
                        amp=True)
    assert kept.optim_wrapper.dtype == 'float16'
    auto = train_config(TOY, resume='auto')
    assert auto.resume is True and auto.load_from is None
    path = train_config(TOY, resume='w/iter_4.pth')
    assert path.resume is True and path.load_from == 'w/iter_4.pth'


def test_amp_on_a_wrapper_it_cannot_set_names_the_config():
    with pytest.raises(SystemExit, match=r'--amp sets optim_wrapper.dtype.*'
                       r'sd15_finetune_toy.py uses AmpOptimWrapper'):
        train_config(TOY, cfg_options={'optim_wrapper.type':
                                       'AmpOptimWrapper'}, amp=True)


def test_evaluation_config_adds_the_outputs_hook_once(tmp_path):
    ckpt = tmp_path / 'iter_2.pth'
    ckpt.write_bytes(b'')
    (tmp_path / 'last_checkpoint').write_text(str(ckpt) + '\n')
    assert resolve_checkpoint(str(tmp_path)) == str(ckpt)
    cfg = evaluation_config(TOY, str(tmp_path), save_images=False)
    assert cfg.load_from == str(ckpt) and cfg.resume is False
    hooks = [h for h in cfg.custom_hooks if h['type'] == 'TestOutputsHook']
    assert hooks == [dict(type='TestOutputsHook', save_images=False)]
    empty = tmp_path / 'empty_work_dir'
    empty.mkdir()
    with pytest.raises(SystemExit, match='empty_work_dir holds no '
                       'last_checkpoint'):
        resolve_checkpoint(str(empty))
    with pytest.raises(SystemExit, match='missing.pth does not exist'):
        resolve_checkpoint(str(tmp_path / 'missing.pth'))
