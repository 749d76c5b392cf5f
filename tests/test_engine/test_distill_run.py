"""A toy SSD-1B distillation run, end to end (untrained toy teacher, so
the test does not wait for the teacher to be trained)."""
import json
import os
import os.path as osp

import pytest
import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

from diffkd.apis import load_pipeline
from tests.conftest import run_config


@pytest.mark.slow
def test_toy_ssd1b_distillation_exports_a_diffusers_student(tmp_path,
                                                            toy_sdxl):
    work = run_config(
        'toy/ssd_1b_distill_toy.py', tmp_path / 'run',
        f'model.teacher.model={toy_sdxl}',
        f'model.student.model={toy_sdxl}', 'train_cfg.max_iters=3',
        'train_dataloader.batch_size=4', 'custom_hooks.0.interval=0',
        'custom_hooks.0.num_inference_steps=2',
        'default_hooks.logger.interval=1')
    unet_dir = osp.join(work, 'final', 'unet')
    student = UNet2DConditionModel.from_pretrained(unet_dir)
    assert student.config.mid_block_type == 'UNetMidBlock2D'
    teacher = UNet2DConditionModel.from_pretrained(toy_sdxl, subfolder='unet')
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters())
    info = json.load(open(osp.join(work, 'final', 'export_info.json')))
    assert info['teacher'] == toy_sdxl
    # Drops into a standard SDXL pipeline as unet=...
    pipe = StableDiffusionXLPipeline.from_pretrained(toy_sdxl, unet=student)
    out = pipe('a red circle on a blue background', num_inference_steps=2,
               output_type='np').images
    assert out.shape == (1, 32, 32, 3)
    # ... and the API used by tools/infer.py builds the same thing.
    assert load_pipeline(work).unet.config.mid_block_type == 'UNetMidBlock2D'
    # Every KD term, and every pair's, reaches the scalar backends ...
    run = next(osp.join(work, d) for d in sorted(os.listdir(work))
               if osp.isdir(osp.join(work, d, 'vis_data')))
    rows = [json.loads(line) for line in
            open(osp.join(run, 'vis_data', 'scalars.json'))]
    scalars = [r for r in rows if 'loss' in r]
    assert len(scalars) == 3
    for key in ('loss', 'loss_task', 'loss_kd_out', 'loss_kd_feat',
                'kd_feat/mid_block'):
        assert all(key in row for row in scalars), key
    assert sum(k.startswith('kd_feat/') for k in scalars[0]) == 26
    # ... while the console line carries the loss and its three terms only.
    lines = [line for line in open(osp.join(
        run, osp.basename(run) + '.log')) if 'Iter(train)' in line]
    assert len(lines) == 3
    for line in lines:
        for key in ('loss:', 'loss_task:', 'loss_kd_out:', 'loss_kd_feat:'):
            assert key in line, (key, line)
        assert 'kd_feat/' not in line, line
    # The held-out loss at the end (train_cfg.val_interval), per term.
    val = [r for r in rows if 'val/loss' in r]
    assert [r['step'] for r in val] == [3]
    assert all(f'val/{k}' in val[0]
               for k in ('loss_task', 'loss_kd_out', 'loss_kd_feat'))
    ckpt = torch.load(osp.join(work, 'iter_3.pth'), weights_only=False)
    assert not any(k.startswith('teacher.') for k in ckpt['state_dict'])
    names = [n for g in ckpt['optimizer']['param_groups'] for n in g['params']]
    student_params = [p for p in student.parameters()]
    assert len(names) == len(student_params)
