"""The step-distilled toy teacher (diffkd-toy/sdxl-teacher-lcm): built only
when named, by a consistency-distillation run of its config from the toy
SDXL teacher, as a pipeline that samples with LCMScheduler."""
import json
import os
import os.path as osp

import torch
from diffusers import DiffusionPipeline, LCMScheduler, UNet2DConditionModel

from diffkd.toy import build_toy_world
from diffkd.toy.assets import TOY_ASSETS
from diffkd.toy.teachers import OPTIONS_ENV
from diffkd.utils.hub import is_built, toy_asset_dir


def test_step_distilled_teacher_is_built_on_demand(diffkd_home, tmp_path,
                                                    monkeypatch):
    home = str(tmp_path / 'home')
    os.makedirs(osp.join(home, 'toy'))
    # What it needs, from the session's toy world (built there already).
    for name in ('shapes', 'vae', 'sdxl', 'sdxl-teacher'):
        os.symlink(toy_asset_dir(name, diffkd_home),
                   toy_asset_dir(name, home))
    assert TOY_ASSETS['sdxl-teacher-lcm'].on_demand
    build_toy_world(home=home)  # the whole world: no training run
    path = toy_asset_dir('sdxl-teacher-lcm', home)
    assert not osp.exists(path)

    monkeypatch.setenv(OPTIONS_ENV, 'train_cfg.max_iters=2 '
                       'train_dataloader.batch_size=2')
    paths = build_toy_world(['sdxl-teacher-lcm'], home=home)
    assert paths['sdxl-teacher-lcm'] == path and is_built(path)
    with open(osp.join(path, 'training', 'training.json')) as f:
        record = json.load(f)
    assert record['config'] == 'configs/toy/sdxl_lcm_teacher_toy.py'
    assert record['cfg_options'] == ['train_cfg.max_iters=2',
                                     'train_dataloader.batch_size=2']
    pipe = DiffusionPipeline.from_pretrained(path)
    assert isinstance(pipe.scheduler, LCMScheduler)
    # a plain UNet (no guidance input), trained away from its teacher
    assert pipe.unet.config.time_cond_proj_dim is None
    teacher = UNet2DConditionModel.from_pretrained(
        toy_asset_dir('sdxl-teacher', home), subfolder='unet')
    mine = pipe.unet.state_dict()
    assert set(mine) == set(teacher.state_dict())
    assert any(not torch.equal(mine[k], v)
               for k, v in teacher.state_dict().items())
    pipe.set_progress_bar_config(disable=True)
    out = pipe('a red circle on a blue background', num_inference_steps=2,
               guidance_scale=1.0, output_type='latent',
               generator=torch.Generator().manual_seed(0)).images
    assert out.shape == (1, 4, 8, 8) and torch.isfinite(out).all()

    # The KOALA-Lightning toy twin distils from it and samples with
    # trailing Euler.
    from diffusers import EulerDiscreteScheduler

    from diffkd.apis import load_pipeline
    from tests.conftest import REPO, run_config
    monkeypatch.setenv('DIFFKD_HOME', home)
    cfg = tmp_path / 'koala_lightning_test.py'
    cfg.write_text(
        f"_base_ = '{osp.join(REPO, 'configs', 'toy', 'koala_lightning_700m_distill_toy.py')}'\n"  # noqa: E501
        "custom_hooks = [dict(type='DiffusersExportHook')]\n")
    work = run_config(str(cfg), tmp_path / 'koala_lightning',
                      'train_cfg.max_iters=1', 'train_dataloader.batch_size=2')
    with open(osp.join(work, 'final', 'export_info.json')) as f:
        assert json.load(f)['teacher'] == 'diffkd-toy/sdxl-teacher-lcm'
    student = load_pipeline(work)
    assert isinstance(student.scheduler, EulerDiscreteScheduler)
    assert student.scheduler.config.timestep_spacing == 'trailing'
