"""The toy LCM configs train through tools/train.py, export a pipeline part
tools/infer.py samples with LCMScheduler, and resume exactly (the target
network included)."""
import json
import os.path as osp

import pytest
import torch
from diffusers import LCMScheduler, UNet2DConditionModel

from diffkd.utils.hub import resolve_model_path
from tests.conftest import REPO, run_config

OPTS = ('train_dataloader.batch_size=2', 'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1')


def config(tmp_path, name, extra=''):
    cfg = tmp_path / f'{name}_test.py'
    cfg.write_text(
        f"_base_ = '{osp.join(REPO, 'configs', 'toy', name + '.py')}'\n"
        "custom_hooks = [dict(type='DiffusersExportHook')]\n" + extra)
    return str(cfg)


@pytest.fixture(scope='module')
def ssd_1b_student(diffkd_home, tmp_path_factory):
    """A toy SSD-1B student UNet as ssd_1b_distill_toy.py starts it."""
    from diffkd.models.compression import (build_compression,
                                           init_from_teacher)
    teacher = UNet2DConditionModel.from_pretrained(
        resolve_model_path('diffkd-toy/sdxl-teacher'), subfolder='unet')
    result = build_compression(dict(type='SSD1B'))(dict(teacher.config))
    unet = UNet2DConditionModel.from_config(result.student_config)
    init_from_teacher(unet, teacher, result.module_map)
    path = str(tmp_path_factory.mktemp('ssd_1b') / 'unet')
    unet.save_pretrained(path)
    return path


def assert_same_checkpoint(a, b):
    assert set(a['state_dict']) == set(b['state_dict'])
    for name, value in a['state_dict'].items():
        assert torch.equal(b['state_dict'][name], value), name


@pytest.mark.parametrize('name', ['lcm_sdxl_toy', 'lcm_lora_ssd_1b_toy'])
def test_toy_lcm_config_trains_exports_and_resumes_exactly(
        name, tmp_path, ssd_1b_student):
    extra = ''
    if 'lora' in name:
        extra = f"model = dict(student=dict(unet='{ssd_1b_student}'))\n"
    cfg = config(tmp_path, name, extra)
    straight = run_config(cfg, tmp_path / 'straight', 'train_cfg.max_iters=3',
                          *OPTS)
    ckpt = torch.load(osp.join(straight, 'iter_3.pth'), weights_only=False)
    parts = {k.split('.')[0] for k in ckpt['state_dict']}
    if 'lora' in name:
        assert parts == {'student'}
        assert any('lora_B' in k for k in ckpt['state_dict'])
    else:
        # the EMA target is training state; the frozen teacher is not
        assert parts == {'student', 'target_unet'}
        assert int(ckpt['state_dict']['target_unet.steps']) == 3
    final = osp.join(straight, 'final')
    with open(osp.join(final, 'export_info.json')) as f:
        info = json.load(f)
    assert info['parts'] == (['lora', 'scheduler'] if 'lora' in name else
                             ['unet', 'scheduler'])
    if 'lora' in name:
        assert info['base_unet'] == ssd_1b_student
    from diffkd.apis import load_pipeline
    pipe = load_pipeline(straight)
    assert isinstance(pipe.scheduler, LCMScheduler)
    # 2 iterations, checkpoint, resumed to 3: the same weights and target
    part = tmp_path / 'part'
    run_config(cfg, part, 'train_cfg.max_iters=2', *OPTS)
    run_config(cfg, part, 'train_cfg.max_iters=3', *OPTS, resume=True)
    resumed = torch.load(osp.join(part, 'iter_3.pth'), weights_only=False)
    assert_same_checkpoint(ckpt, resumed)
