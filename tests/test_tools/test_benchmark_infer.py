import json
import math
import os.path as osp

import pytest

from tests.conftest import REPO, run_tool

TOOL = 'analysis_tools/benchmark_infer.py'


def test_toy_distillation_config(toy_sdxl, tmp_path, capsys):
    out = tmp_path / 'bench.json'
    # the untrained toy SDXL as teacher: nothing is trained
    res = run_tool(TOOL, [
        osp.join(REPO, 'configs', 'toy', 'ssd_1b_distill_toy.py'),
        '--cfg-options', 'model.teacher.model=diffkd-toy/sdxl',
        '--resolution', 32, '--steps', 2, '--warmup', 1, '--threads', 1,
        '--device', 'cpu', '--out', out])
    assert json.loads(capsys.readouterr().out) == res
    assert json.loads(out.read_text()) == res
    assert res['settings']['dtype'] == 'float32'
    teacher, student = res['rows']
    assert teacher['role'] == 'teacher' and student['role'] == 'student'
    assert student['teacher'] == teacher['name']
    assert teacher['weights'] == osp.join(toy_sdxl, 'unet')
    assert teacher['checkpoint_file_bytes'] > 0
    assert student['weights'] == 'random'
    assert student['params'] < teacher['params']
    for row in (teacher, student):
        assert row['checkpoint_bytes'] == row['params'] * 4
        assert row['latency_ms_per_step'] > 0
        assert row['latency_s_total'] > 0
        assert row['peak_mem_bytes'] > 0
        assert row['peak_mem_method'] in ('rss_hwm', 'rss_poll')
        assert row['latent_size'] == 8  # 32 px through the toy 4x VAE
    assert student['speedup_vs_teacher'] == pytest.approx(
        teacher['latency_ms_per_step'] / student['latency_ms_per_step'],
        rel=2e-3)
    assert student['params_ratio_vs_teacher'] == pytest.approx(
        student['params'] / teacher['params'], abs=1e-4)


def test_real_architecture_random_weights():
    res = run_tool(TOOL, ['--arch', 'bk_sdm_tiny', '--resolution', 64,
                          '--steps', 1, '--warmup', 0, '--threads', 1,
                          '--device', 'cpu'])
    (row, ) = res['rows']
    assert row['name'] == 'bk_sdm_tiny' and row['weights'] == 'random'
    assert row['params'] == 323_384_964  # BK-SDM-Tiny's published UNet
    assert row['checkpoint_bytes'] == row['params'] * 4
    # its teacher (SD-1.5, 859,520,964) is counted, not run
    assert row['params_ratio_vs_teacher'] == round(
        323_384_964 / 859_520_964, 4)
    assert row['speedup_vs_teacher'] is None
    assert row['latent_size'] == 8
    assert math.isfinite(row['latency_ms_per_step'])
    assert row['latency_ms_per_step'] > 0


def test_unknown_arch_suggests_closest():
    with pytest.raises(ValueError, match='did you mean bk_sdm_tiny'):
        run_tool(TOOL, ['--arch', 'bk_sdm_tinny'])


def test_config_that_is_no_diffusion_model(tmp_path):
    cfg = tmp_path / 'classifier.py'
    cfg.write_text("model = dict(type='ImageClassifier')\n")
    with pytest.raises(ValueError, match='classifier.py: neither'):
        run_tool(TOOL, [cfg])
