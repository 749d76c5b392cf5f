"""A toy SSD-1B distillation run, end to end (untrained toy teacher, so
the test does not wait for the teacher to be trained)."""
import json
import os.path as osp

import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel

from diffkd.apis import load_pipeline
from tests.conftest import run_config


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
    # Every KD term was logged.
    log = open(next(osp.join(work, d, 'vis_data', 'scalars.json')
                    for d in sorted(__import__('os').listdir(work))
                    if osp.isdir(osp.join(work, d, 'vis_data')))).read()
    for key in ('loss_task', 'loss_kd_out', 'loss_kd_feat',
                'kd_feat/mid_block'):
        assert key in log
    ckpt = torch.load(osp.join(work, 'iter_3.pth'), weights_only=False)
    assert not any(k.startswith('teacher.') for k in ckpt['state_dict'])
    names = [n for g in ckpt['optimizer']['param_groups'] for n in g['params']]
    student_params = [p for p in student.parameters()]
    assert len(names) == len(student_params)
