"""The toy teachers' real build path: trained by their fine-tune config
(``--retrain-teachers``), shipped as fp16, installed from the shipped copy."""
import json
import os
import os.path as osp
import shutil

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import load_file

from diffkd.toy import build_toy_world
from diffkd.toy.teachers import (MAX_SHIPPED_BYTES, RECORD,
                                 shipped_teacher_problem,
                                 teacher_config_digest)
from tests.conftest import run_tool


def test_retrained_teacher_is_trained_by_the_finetune_config_and_shipped(
        tmp_path, monkeypatch, toy_sd15):
    # A 2-iteration teacher: the same path as a full retrain.
    options = ['train_cfg.max_iters=2', 'train_dataloader.batch_size=2',
               'custom_hooks.0.num_inference_steps=1']
    monkeypatch.setenv('DIFFKD_TOY_TEACHER_OPTIONS', ' '.join(options))
    home, weights = tmp_path / 'home', tmp_path / 'weights'
    assert run_tool('build_toy_world.py', [
        '--retrain-teachers', '--only', 'sd15-teacher', '--home', home,
        '--weights-dir', weights]) == 0

    path = osp.join(home, 'toy', 'sd15-teacher')
    assert osp.isfile(osp.join(path, 'training', 'train.log'))
    assert os.listdir(osp.join(path, 'training', 'vis'))
    with open(osp.join(path, 'training', RECORD)) as f:
        record = json.load(f)
    assert record['config'] == 'configs/toy/sd15_finetune_toy.py'
    assert record['cfg_options'] == options
    assert record['iterations'] == 2
    assert record['config_sha256'] == teacher_config_digest('sd15', options)
    pipe = StableDiffusionPipeline.from_pretrained(path)
    base = StableDiffusionPipeline.from_pretrained(toy_sd15)
    assert not all(
        (a == b).all() for a, b in zip(pipe.unet.parameters(),
                                       base.unet.parameters()))

    # Shipped: fp16, small, with the record beside it.
    shipped = weights / 'sd15-teacher'
    assert sorted(os.listdir(shipped)) == [
        'config.json', 'diffusion_pytorch_model.safetensors', RECORD]
    for name in os.listdir(shipped):
        assert osp.getsize(shipped / name) < MAX_SHIPPED_BYTES
    tensors = load_file(shipped / 'diffusion_pytorch_model.safetensors')
    assert {t.dtype for t in tensors.values()} == {torch.float16}
    assert json.loads((shipped / RECORD).read_text()) == record
    # Trained with overrides, so it is not what the config gives.
    problem = shipped_teacher_problem('sd15', str(weights))
    assert 'train_cfg.max_iters=2' in problem
    assert 'python tools/build_toy_world.py --retrain-teachers' in problem

    # A plain build installs the shipped UNet (fp32), without training.
    shutil.rmtree(path)
    build_toy_world(['sd15-teacher'], home=str(home),
                    weights_dir=str(weights))
    assert not osp.exists(osp.join(path, 'training', 'train.log'))
    unet = UNet2DConditionModel.from_pretrained(path, subfolder='unet')
    for name, p in unet.state_dict().items():
        assert p.dtype == torch.float32
        assert torch.equal(p, tensors[name].float()), name
    assert torch.allclose(
        unet.state_dict()['conv_in.weight'],
        pipe.unet.state_dict()['conv_in.weight'], atol=1e-3)
