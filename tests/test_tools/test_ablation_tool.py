"""tools/analysis_tools/ablation.py: trains and evaluates each config the
same way and writes the table; the ablation configs differ only in the
loss terms they switch on."""
import glob
import json
import os.path as osp

import pytest
from mmengine.config import Config

from tests.conftest import REPO, run_tool

ABLATION = osp.join(REPO, 'configs', 'toy', 'ablation')


def logged_losses(work):
    keys = set()
    for path in glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json')):
        for line in open(path):
            keys |= {k for k in json.loads(line) if k.startswith('loss')}
    return keys


def test_ablation_configs_share_everything_but_the_kd_terms():
    for topo in ('bk_sdm_small', 'ssd_1b'):
        cfgs = {v: Config.fromfile(osp.join(ABLATION, f'{topo}_{v}.py'))
                for v in ('task_only', 'output_kd', 'feature_kd',
                          'self_attn_kd')}
        for cfg in cfgs.values():
            for key in ('train_cfg', 'param_scheduler', 'randomness',
                        'train_dataloader', 'optim_wrapper'):
                assert cfg[key] == cfgs['feature_kd'][key], (topo, key)
            assert cfg.model.student_init == 'teacher'
        w = {v: c.model.loss_weights for v, c in cfgs.items()}
        assert w['task_only'].output == 0 and w['task_only'].feature == 0
        assert w['output_kd'].output > 0 and w['output_kd'].feature == 0
        assert cfgs['self_attn_kd'].model.features == 'self_attention'
        assert cfgs['feature_kd'].model.features in ('bk_sdm', 'layers')


@pytest.mark.slow
def test_ablation_tool_trains_evaluates_and_tabulates(tmp_path, toy_sdxl):
    configs = [osp.join(ABLATION, 'ssd_1b_task_only.py'),
               osp.join(ABLATION, 'ssd_1b_feature_kd.py')]
    rows = run_tool('analysis_tools/ablation.py', [
        *configs, '--work-dir', tmp_path, '--num-prompts', 3,
        '--cfg-options', f'model.teacher.model={toy_sdxl}',
        f'model.student.model={toy_sdxl}', 'train_cfg.max_iters=2',
        'train_dataloader.batch_size=4', 'default_hooks.logger.interval=1'])
    assert [r['name'] for r in rows] == ['ssd_1b_task_only',
                                         'ssd_1b_feature_kd']
    for row in rows:
        assert 0 <= row['metrics']['toy/all_acc'] <= 1
        assert row['metrics']['agreement/latent_mse'] >= 0
    # the task-only run never consulted the teacher's outputs
    assert logged_losses(tmp_path / 'ssd_1b_task_only') == {'loss',
                                                             'loss_task'}
    assert {'loss_kd_out', 'loss_kd_feat'} <= logged_losses(
        tmp_path / 'ssd_1b_feature_kd')
    md = (tmp_path / 'ablation.md').read_text()
    assert md.count('\n| ssd_1b_') == 2 and 'latent MSE vs teacher' in md
    assert json.loads((tmp_path / 'ablation.json').read_text()) == rows
