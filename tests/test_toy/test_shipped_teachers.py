"""The toy teachers shipped in diffkd/toy/weights match their configs."""
import json
import os
import os.path as osp

import pytest
import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import load_file

from diffkd.toy import build_toy_world
from diffkd.toy.pipelines import toy_unet_config
from diffkd.toy.teachers import (MAX_SHIPPED_BYTES, RECORD, TEACHER_KINDS,
                                 shipped_teacher_dir,
                                 shipped_teacher_problem)


@pytest.mark.parametrize('kind', TEACHER_KINDS)
def test_shipped_teacher_is_trained_by_the_current_config(kind):
    # Fails when configs/toy/<kind>_finetune_toy.py (or what it inherits)
    # changed since the teacher was trained; the message says how to
    # regenerate it.
    problem = shipped_teacher_problem(kind)
    assert problem is None, problem


@pytest.mark.parametrize('kind', TEACHER_KINDS)
def test_shipped_teacher_is_small_fp16_and_of_the_toy_topology(kind):
    folder = shipped_teacher_dir(kind)
    for name in os.listdir(folder):
        assert osp.getsize(osp.join(folder, name)) < MAX_SHIPPED_BYTES, name
    tensors = load_file(
        osp.join(folder, 'diffusion_pytorch_model.safetensors'))
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    assert all(torch.isfinite(t).all() for t in tensors.values())
    config = UNet2DConditionModel.load_config(folder)
    for key, value in toy_unet_config(kind).items():
        assert config[key] == (list(value) if isinstance(value, tuple)
                               else value), key
    with open(osp.join(folder, RECORD)) as f:
        record = json.load(f)
    assert record['config'] == f'configs/toy/{kind}_finetune_toy.py'
    assert record['cfg_options'] == []
    assert record['iterations'] > 100


@pytest.mark.parametrize('kind', TEACHER_KINDS)
def test_teacher_asset_is_the_shipped_unet_in_fp32(kind, tmp_path):
    paths = build_toy_world([f'{kind}-teacher'], home=str(tmp_path))
    # Only what the teacher needs, and no training.
    assert list(paths) == ['vae', kind, f'{kind}-teacher']
    path = paths[f'{kind}-teacher']
    assert sorted(os.listdir(osp.join(path, 'training'))) == [RECORD]
    shipped = shipped_teacher_dir(kind)
    tensors = load_file(
        osp.join(shipped, 'diffusion_pytorch_model.safetensors'))
    unet = UNet2DConditionModel.from_pretrained(path, subfolder='unet')
    state = unet.state_dict()
    assert sorted(state) == sorted(tensors)
    for name, p in state.items():
        assert p.dtype == torch.float32
        assert torch.equal(p, tensors[name].float()), name
    # The rest of the pipeline is the base toy pipeline.
    base = paths[kind]
    for part in sorted(os.listdir(base)):
        if part != 'unet' and osp.isdir(osp.join(base, part)):
            assert sorted(os.listdir(osp.join(path, part))) == sorted(
                os.listdir(osp.join(base, part))), part
