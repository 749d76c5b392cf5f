import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from tests.conftest import REPO


def stats(config):
    out = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'analysis_tools',
                                  'unet_stats.py'),
         osp.join(REPO, 'configs', config)],
        check=True, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=REPO, HF_HUB_OFFLINE='1'))
    return json.loads(out.stdout)


def test_real_config_needs_no_download():
    res = stats('ssd_1b/ssd_1b_distill_from_sdxl.py')
    assert res['teacher']['params'] == 2_567_463_684
    assert res['teacher']['config_from'] == 'shipped:sdxl_base'
    assert res['student']['params'] == 1_331_334_404
    assert res['student']['mid']['type'] == 'UNetMidBlock2D'
    assert res['student']['down'][2]['transformer_depths'] == [4, 4]


@pytest.mark.parametrize('config,params', [
    ('bk_sdm/bk_sdm_tiny_distill_from_sd14.py', 323_384_964),
    ('koala/koala_700m_distill_from_sdxl.py', 782_822_724),
    ('distill_sd/distill_sd_small.py', 579_384_964),
])
def test_other_families(config, params):
    assert stats(config)['student']['params'] == params


def test_toy_twin_and_worked_example_do_not_train_anything(
        tmp_path, monkeypatch):
    # an empty home: nothing may be built or trained in it
    monkeypatch.setenv('DIFFKD_HOME', str(tmp_path))
    res = stats('toy/my_student_distill_toy.py')
    assert res['student']['params'] < res['teacher']['params']
    assert res['teacher']['config_from'] == 'toy:sdxl'
    assert not osp.exists(osp.join(tmp_path, 'toy', 'sdxl-teacher'))
