"""End to end on the toy world: train, export, sample, resume."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from diffusers import (StableDiffusionXLPipeline, UNet2DConditionModel)
from mmengine.config import Config
from safetensors.torch import load_file

from tests.conftest import REPO, run_config

FAST = ('train_dataloader.batch_size=4',
        'custom_hooks.0.num_inference_steps=2',
        'default_hooks.logger.interval=1')


def unet_weights(path):
    return load_file(osp.join(path, 'diffusion_pytorch_model.safetensors'))


@pytest.fixture(scope='module')
def sdxl_run(tmp_path_factory, toy_sdxl):
    work = tmp_path_factory.mktemp('sdxl_run')
    run_config('toy/sdxl_finetune_toy.py', work, 'train_cfg.max_iters=4',
               'default_hooks.checkpoint.interval=2',
               'custom_hooks.0.interval=2', *FAST)
    return str(work)


def test_run_writes_grids_checkpoints_and_final_unet(sdxl_run):
    assert osp.isfile(osp.join(sdxl_run, 'vis', 'iter_2.png'))
    assert osp.isfile(osp.join(sdxl_run, 'vis', 'iter_4.png'))
    assert osp.isfile(osp.join(sdxl_run, 'iter_4.pth'))
    info = json.load(open(osp.join(sdxl_run, 'final', 'export_info.json')))
    assert info['pipeline_class'] == 'StableDiffusionXLPipeline'
    assert info['step'] == 4


def test_final_unet_loads_in_plain_diffusers(sdxl_run, toy_sdxl):
    unet = UNet2DConditionModel.from_pretrained(
        osp.join(sdxl_run, 'final', 'unet'))
    base = UNet2DConditionModel.from_pretrained(toy_sdxl, subfolder='unet')
    trained = dict(unet.named_parameters())
    changed = [n for n, p in base.named_parameters()
               if not torch.equal(p, trained[n])]
    assert changed, 'training did not change the exported UNet'
    # The exported weights are the checkpoint's weights: with the real
    # config's TrainableEMAHook, its state_dict holds the average
    # (test_ema_weights_are_exported_and_resumed_exactly).
    ckpt = torch.load(osp.join(sdxl_run, 'iter_4.pth'), weights_only=False)
    for name, value in unet_weights(osp.join(sdxl_run, 'final',
                                             'unet')).items():
        torch.testing.assert_close(ckpt['state_dict'][f'unet.{name}'], value)
    pipe = StableDiffusionXLPipeline.from_pretrained(toy_sdxl, unet=unet)
    img = pipe('a red circle on a blue background', num_inference_steps=2,
               output_type='np').images
    assert img.shape == (1, 32, 32, 3)


def test_checkpoint_leaves_frozen_parts_out(sdxl_run):
    ckpt = torch.load(osp.join(sdxl_run, 'iter_4.pth'), weights_only=False)
    assert all(k.startswith('unet.') for k in ckpt['state_dict'])


def test_infer_writes_images(sdxl_run, tmp_path):
    out = tmp_path / 'samples'
    cmd = [sys.executable, osp.join(REPO, 'tools', 'infer.py'), sdxl_run,
           '--prompt', 'a red circle on a blue background',
           'a green square on a white background', '--steps', '2',
           '--guidance', '1.0', '--seed', '3', '--out', str(out)]
    subprocess.run(cmd, check=True, env=dict(os.environ, PYTHONPATH=REPO))
    files = sorted(os.listdir(out))
    assert len(files) == 2 and files[0].endswith('seed3.png')


def test_infer_on_a_dir_without_export_fails_clearly(tmp_path):
    cmd = [sys.executable, osp.join(REPO, 'tools', 'infer.py'),
           str(tmp_path), '--prompt', 'x']
    res = subprocess.run(cmd, capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert res.returncode != 0
    assert 'has no diffkd export' in res.stderr


def test_resume_matches_uninterrupted_run(tmp_path, toy_sd15):
    opts = ('default_hooks.checkpoint.interval=3', 'custom_hooks=[]',
            'train_dataloader.batch_size=4')
    straight = run_config('toy/sd15_finetune_toy.py', tmp_path / 'straight',
                          'train_cfg.max_iters=6', *opts)
    part = run_config('toy/sd15_finetune_toy.py', tmp_path / 'part',
                      'train_cfg.max_iters=3', *opts)
    assert osp.isfile(osp.join(part, 'iter_3.pth'))
    run_config('toy/sd15_finetune_toy.py', tmp_path / 'part',
               'train_cfg.max_iters=6', *opts, resume=True)
    a = torch.load(osp.join(straight, 'iter_6.pth'), weights_only=False)
    b = torch.load(osp.join(part, 'iter_6.pth'), weights_only=False)
    assert a['meta']['iter'] == b['meta']['iter'] == 6
    for key, value in a['state_dict'].items():
        # Same data, noise and optimizer state: equal up to float
        # reassociation (tolerance 1e-6 absolute).
        torch.testing.assert_close(b['state_dict'][key], value, rtol=0,
                                   atol=1e-6)


def test_resume_refuses_pickled_code(tmp_path):
    import pickle

    from diffkd.engine.checkpoint import UnsafeCheckpointError, \
        safe_torch_load

    class Evil:

        def __reduce__(self):
            return (os.system, ('echo pwned > ' + str(tmp_path / 'pwned'), ))

    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        pickle.dump({'state_dict': Evil()}, f)
    with pytest.raises(UnsafeCheckpointError, match='refused'):
        safe_torch_load(str(path))
    assert not (tmp_path / 'pwned').exists()
    empty = tmp_path / 'empty.pth'
    empty.write_bytes(b'')
    with pytest.raises(RuntimeError, match='empty'):
        safe_torch_load(str(empty))


def test_ema_weights_are_exported_and_resumed_exactly(tmp_path, toy_sd15):
    cfg = tmp_path / 'ema_cfg.py'
    cfg.write_text(
        f"_base_ = '{osp.join(REPO, 'configs', 'toy', 'sd15_finetune_toy.py')}'\n"
        "custom_hooks = [dict(type='DiffusersExportHook'),\n"
        "                dict(type='TrainableEMAHook', momentum=0.5)]\n")
    opts = ('train_dataloader.batch_size=2',
            'default_hooks.checkpoint.interval=2')
    straight = run_config(str(cfg), tmp_path / 'straight',
                          'train_cfg.max_iters=4', *opts)
    ckpt = torch.load(osp.join(straight, 'iter_4.pth'), weights_only=False)
    # mmengine's EMAHook layout: the averaged weights in state_dict, the
    # raw ones in ema_state_dict (under module.), trainable weights only.
    raw = ckpt['ema_state_dict']
    assert set(raw) == {'steps'} | {f'module.{k}' for k in ckpt['state_dict']}
    exported = unet_weights(osp.join(straight, 'final', 'unet'))
    raw_differs = False
    for name, value in exported.items():
        torch.testing.assert_close(value, ckpt['state_dict'][f'unet.{name}'])
        raw_differs |= not torch.equal(value, raw[f'module.unet.{name}'])
    assert raw_differs, 'the export holds the raw weights, not the EMA'
    # 2 iterations, then resumed to 4: the same average and raw weights.
    part = run_config(str(cfg), tmp_path / 'part', 'train_cfg.max_iters=2',
                      *opts)
    run_config(str(cfg), tmp_path / 'part', 'train_cfg.max_iters=4', *opts,
               resume=True)
    resumed = torch.load(osp.join(part, 'iter_4.pth'), weights_only=False)
    assert int(resumed['ema_state_dict']['steps']) == 4
    for key in ('state_dict', 'ema_state_dict'):
        assert set(resumed[key]) == set(ckpt[key])
        for name, value in ckpt[key].items():
            torch.testing.assert_close(resumed[key][name], value, rtol=0,
                                       atol=1e-6)


def test_visualizer_backend_receives_the_grid(sdxl_run):
    found = [f for root, _, files in os.walk(sdxl_run) for f in files
             if 'vis_image' in root and f.startswith('samples')]
    assert found


def test_amp_and_gradient_checkpointing_train(tmp_path, toy_sd15):
    """``--amp`` (bf16 autocast on CPU) with gradient checkpointing and a
    trained text encoder."""
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import train
    finally:
        sys.path.pop(0)
    work = tmp_path / 'amp'
    train.main([
        osp.join(REPO, 'configs', 'toy', 'sd15_finetune_toy.py'), '--amp',
        '--work-dir', str(work), '--cfg-options', 'train_cfg.max_iters=2',
        'train_dataloader.batch_size=2', 'custom_hooks=[]',
        'model.gradient_checkpointing=True',
        'model.finetune_text_encoder=True'
    ])
    ckpt = torch.load(osp.join(work, 'iter_2.pth'), weights_only=False)
    prefixes = {k.split('.')[0] for k in ckpt['state_dict']}
    assert prefixes == {'unet', 'text_encoder'}
    # --amp is a config key: the precision is the optimizer wrapper's
    cfg = Config.fromfile(next(osp.join(work, f) for f in os.listdir(work)
                               if f.endswith('.py')))
    assert cfg.optim_wrapper.type == 'DiffusionOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'auto'
