"""diffkd.analysis.ablation: config order, failure messages, the table."""
import os.path as osp
import sys

import pytest

from diffkd.analysis.ablation import (default_ablation_folder, list_configs,
                                      run_command, table)


def test_folder_runs_in_ablation_order_per_topology():
    names = [osp.splitext(osp.basename(p))[0]
             for p in list_configs([default_ablation_folder()])]
    variants = ['task_only', 'output_kd', 'feature_kd', 'self_attn_kd']
    assert names == [f'{topo}_{v}' for topo in ('bk_sdm_small', 'ssd_1b')
                     for v in variants]


def test_a_config_name_is_found_and_an_empty_folder_refused(tmp_path):
    (found, ) = list_configs(['toy/ablation/ssd_1b_feature_kd.py'])
    assert found == osp.join(default_ablation_folder(),
                             'ssd_1b_feature_kd.py')
    with pytest.raises(SystemExit, match='no configs found'):
        list_configs([str(tmp_path)])


def test_failed_command_names_its_log(tmp_path):
    log = tmp_path / 'x.train.log'
    with pytest.raises(SystemExit,
                       match=r'failed \(exit 3\); see .*x\.train\.log'):
        run_command([sys.executable, '-c',
                     'import sys; print("boom"); sys.exit(3)'], str(log))
    assert log.read_text() == 'boom\n'


def test_table_shows_the_metrics_some_run_has():
    rows = [dict(name='a', metrics={'toy/all_acc': 0.5,
                                    'agreement/psnr': 21.234},
                 train_seconds=12.4),
            dict(name='b', metrics={'toy/all_acc': 0.25},
                 train_seconds=3.6)]
    assert table(rows) == (
        '| run | prompt score (all three) | PSNR vs teacher (dB) | '
        'train time |\n'
        '|---|---|---|---|\n'
        '| a | 50.0% | 21.23 | 12 s |\n'
        '| b | 25.0% | - | 4 s |\n')
