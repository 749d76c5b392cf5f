"""tools/analysis_tools/benchmark_train.py on a toy distillation config."""
import json

import pytest

from tests.conftest import run_tool

# The untrained toy SDXL pipeline as teacher: nothing is trained first.
TOY = ['model.teacher.model=diffkd-toy/sdxl',
       'model.student.model=diffkd-toy/sdxl',
       'train_dataloader.batch_size=4', 'custom_hooks=[]',
       'default_hooks.checkpoint.save_last=False']


def test_engine_and_reference_report_the_same_math(tmp_path, toy_sdxl):
    out = tmp_path / 'bench.json'
    res = run_tool('analysis_tools/benchmark_train.py', [
        'configs/toy/ssd_1b_distill_uncached_toy.py', '--iters', 2,
        '--warmup', 1, '--reference', '--out', out, '--cfg-options', *TOY])
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert res['batch_size'] == 4 and res['iters'] == 2
    assert res['random_weights'] == [] and res['toy_data'] is None
    # SSD-1B's layer-level KD: every resnet and attention of the student.
    assert res['feature_pairs'] > 10
    assert 0 < res['unet_params']['student'] < res['unet_params']['teacher']
    # Both loops score one batch identically before they are timed.
    assert res['loss_parity']['abs_diff'] < 1e-5
    assert res['loss_parity']['engine'] > 0
    for side in ('engine', 'reference'):
        r = res[side]
        assert r['s_per_iter'] > 0 and r['s_per_iter_median'] > 0
        assert r['img_per_s'] == pytest.approx(4 / r['s_per_iter'])
        assert r['peak_mem_bytes'] > r['working_mem_bytes'] >= 0
        split = r['split_s_per_iter']
        # The split accounts for the whole iteration, stage by stage.
        assert sum(split.values()) == pytest.approx(r['s_per_iter'],
                                                    rel=1e-6)
        assert split['teacher_forward'] > 0
        assert split['student_forward_backward'] > 0
        assert split['optimizer'] > 0 and split['encode'] > 0
    assert res['ratio']['time'] == pytest.approx(
        res['engine']['s_per_iter'] / res['reference']['s_per_iter'])
    assert res['ratio']['peak_mem'] == pytest.approx(
        res['engine']['peak_mem_bytes'] / res['reference']['peak_mem_bytes'])


@pytest.mark.slow
def test_real_architecture_with_random_weights(tmp_path):
    """A shipped GPU config, run offline: BK-SDM-Tiny from SD-1.4 with the
    published architectures and random weights, on toy data at 64 px."""
    res = run_tool('analysis_tools/benchmark_train.py', [
        'configs/bk_sdm/bk_sdm_tiny_distill_from_sd14.py', '--iters', 1,
        '--warmup', 1, '--random-weights', '--toy-data', 64,
        '--cfg-options', 'train_dataloader.batch_size=1',
        'model.teacher.dtype=float32', 'optim_wrapper.dtype=None',
        'custom_hooks=[]',
        'default_hooks.checkpoint.save_last=False'])
    assert res['random_weights'] == ['CompVis/stable-diffusion-v1-4']
    assert res['toy_data'] == 64
    # SD-1.4's UNet, and BK-SDM-Tiny's (0.32 B parameters in the paper).
    assert res['unet_params']['teacher'] == 859_520_964
    assert 0.31e9 < res['unet_params']['student'] < 0.33e9
    assert res['feature_pairs'] > 0
    assert res['engine']['s_per_iter'] > 0
