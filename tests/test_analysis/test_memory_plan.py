"""The memory planner (diffkd/analysis/memory_plan.py): its accounting of a
traced step, the published architectures' sizes, the switches, and its
prediction against the peak memory of real training steps of the toy
twins (real topologies) at two resolutions."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch

from diffkd.analysis.memory_plan import (GIB, LiveTensors, full_width_counts,
                                         load_config, plan)

TOYS = ('configs/toy/sdxl_finetune_toy.py',
        'configs/toy/ssd_1b_distill_toy.py',
        'configs/toy/bk_sdm_small_distill_toy.py')
# (batch, resolution) measured; the plan traces at batch 1, 64 and 128 px
SIZES = ((2, 64), (2, 128))
TOLERANCE = 0.15
REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_live_tensors_count_new_storages_once_and_free_them():
    w = torch.nn.Parameter(torch.ones(256, 256))
    tracker = LiveTensors([w])
    with tracker:
        a = torch.ones(1024, 256)        # 1 MiB
        view = a[:512].t()                # a view: no new storage
        b = (a @ w).sum()                 # 1 MiB product, freed after sum
        b.backward()                      # w.grad: 256 KiB gradient
        del a, view
    tracker.close()
    peak = max(act + grad for act, grad, _, _ in tracker.events)
    act, grad, cast = (tracker.live[k] for k in ('act', 'grad', 'cast'))
    # a and the product (the view adds nothing); the gradient comes after
    assert 2 * 2**20 <= peak < 2 * 2**20 + 256 * 1024 + 4096
    assert grad == 256 * 256 * 4          # the gradient, as its own kind
    assert act < 4096                     # a freed: only the scalars left
    assert cast == 0


def test_autocast_copies_of_trainable_weights_are_their_own_kind():
    w = torch.nn.Parameter(torch.ones(128, 128))
    tracker = LiveTensors([w])
    with tracker, torch.autocast('cpu', dtype=torch.bfloat16):
        y = torch.ones(4, 128) @ w
    tracker.close()
    assert max(c for _, _, c, _ in tracker.events) == 128 * 128 * 2
    del y


def test_published_architectures_are_counted_at_full_width():
    """SDXL's published component sizes, and the compression recipes'
    students, from meta-device builds (nothing allocated)."""
    counts = full_width_counts(
        load_config('configs/ssd_1b/ssd_1b_distill_from_sdxl_24gb.py'))
    assert counts['teacher'] == 2_567_463_684       # SDXL base UNet
    assert counts['vae'] == 83_653_863
    assert counts['text_encoder'] == 123_060_480    # CLIP ViT-L
    assert counts['text_encoder_2'] == 694_659_840  # OpenCLIP bigG + proj
    assert 1.2e9 < counts['unet'] < 1.4e9           # SSD-1B: 1.3B
    koala = full_width_counts(
        load_config('configs/koala/koala_700m_distill_from_sdxl_24gb.py'))
    assert 0.7e9 < koala['unet'] < 0.8e9            # KOALA-700M: 782M


def test_switches_change_the_planned_parts():
    cfg = 'configs/toy/ssd_1b_distill_toy.py'
    base = plan(cfg, batch=2, resolution=64, device='cpu')
    n = base.resident['trainable UNet weights'] // 4
    assert base.resident['AdamW states'] == 8 * n
    small = plan(cfg, batch=2, resolution=64, device='cpu',
                 switches=dict(optimizer='AdamW8bit', cached=True,
                               student_dtype='bfloat16'))
    assert small.resident['AdamW8bit states'] == 2 * n + 8 * -(-n // 256)
    assert small.resident['trainable UNet weights'] == 2 * n
    assert small.resident['fp32 master weights'] == 4 * n
    assert not [k for k in small.resident if 'vae' in k or 'text' in k]
    offload = plan(cfg, batch=2, resolution=64, device='cpu',
                   switches=dict(offload=True, student_dtype='bfloat16'))
    assert offload.resident['AdamW states'] == 0
    assert offload.resident['fp32 master weights'] == 0
    # a larger batch plans more activations; the largest batch fits
    assert base.peak_at(8, 64) > base.peak_at(2, 64)
    card = base.peak_at(5, 64) / GIB
    assert base.largest_batch(card, 64) == 5


@pytest.fixture(scope='module')
def measured():
    """Peak of a real training step of each toy at each of SIZES, measured
    in one fresh process (nothing left over from other tests in its
    heap)."""
    code = ('import json\n'
            'from diffkd.analysis.memory_plan import measure\n'
            f'print(json.dumps({{c: measure(c, {SIZES!r}) for c in {TOYS!r}}}))\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [REPO, os.environ.get('PYTHONPATH', '')]))
    out = subprocess.run([sys.executable, '-c', code], env=env, cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('config', TOYS)
def test_plan_is_within_15_percent_of_the_measured_peak(config, measured):
    planned = plan(config, device='cpu', resolution=64)
    for (batch, res), measured in zip(SIZES, measured[config]):
        predicted = planned.peak_at(batch, res)
        error = predicted / measured - 1
        assert abs(error) <= TOLERANCE, (
            f'{config} batch {batch} at {res} px: planned '
            f'{predicted / 2**20:.1f} MiB, measured {measured / 2**20:.1f} '
            f'MiB ({error:+.1%})')


def test_cli_prints_the_breakdown_and_the_largest_batch(capsys):
    from tests.conftest import run_tool
    result = run_tool('analysis_tools/memory_plan.py', [
        'configs/toy/bk_sdm_small_distill_toy.py', '--batch', '2',
        '--resolution', '64', '--card-gib', '0.05', '--json'])
    out = json.loads(capsys.readouterr().out)
    assert out['peak_bytes'] == result.peak
    assert out['largest_batch'] == result.largest_batch(0.05)
    assert result.peak_at(out['largest_batch'], 64) <= 0.05 * GIB
    assert result.peak_at(out['largest_batch'] + 1, 64) > 0.05 * GIB
    assert 'AdamW states' in out['resident_bytes']
