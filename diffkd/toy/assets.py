"""Builders of the toy world's cached assets (``diffkd-toy/<name>``).

- ``shapes`` / ``shapes-val``: captioned shape datasets (imagefolder).
- ``vae``: the toy VAE (shipped weights; retrained if they are missing).
- ``sd15`` / ``sdxl``: base pipelines: toy VAE, random text encoders and a
  random UNet of the real topology.
- ``sks-circle``: five photos of the DreamBooth concept (a red ring).
- ``sd15-teacher`` / ``sdxl-teacher``: the base pipelines with a UNet trained
  by diffkd's own fine-tune config (``configs/toy/*_finetune_toy.py``).
"""
import functools
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile

import numpy as np

from diffkd.utils.hub import register_toy_asset, resolve_model_path
from diffkd.utils.paths import find_config, find_tool
from .concept import make_concept_images
from .shapes import make_shapes_dataset

SHIPPED_VAE = osp.join(osp.dirname(osp.abspath(__file__)), 'weights', 'vae')


def _say(msg: str):
    print(f'[diffkd toy] {msg}', flush=True)


@register_toy_asset('shapes')
def build_shapes(out_dir: str):
    _say(f'writing the toy shapes dataset (2048 images) to {out_dir}')
    make_shapes_dataset(out_dir, num_images=2048, size=32, seed=0)


@register_toy_asset('shapes-val')
def build_shapes_val(out_dir: str):
    make_shapes_dataset(out_dir, num_images=90, size=32, seed=1)


@register_toy_asset('sks-circle')
def build_concept(out_dir: str):
    make_concept_images(out_dir, num_images=5, seed=0)


@register_toy_asset('vae')
def build_vae(out_dir: str):
    if osp.exists(osp.join(SHIPPED_VAE, 'config.json')):
        shutil.copytree(SHIPPED_VAE, out_dir, dirs_exist_ok=True)
        return
    from .pipelines import train_toy_vae
    from .shapes import all_combinations, render_shape
    import random
    rng = random.Random(0)
    combos = all_combinations()
    images = np.stack([
        np.asarray(render_shape(*combos[i % len(combos)], 32, rng))
        for i in range(512)
    ])
    _say('training the toy VAE (first use only)')

    def progress(step, loss):
        if step % 200 == 0:
            _say(f'  vae step {step}: reconstruction loss {loss:.4f}')

    train_toy_vae(images, progress=progress).save_pretrained(out_dir)


def _build_pipeline(kind: str, out_dir: str):
    from diffusers import AutoencoderKL
    from .pipelines import build_toy_pipeline, save_pipeline
    vae = AutoencoderKL.from_pretrained(resolve_model_path('diffkd-toy/vae'))
    _say(f'assembling the toy {kind} pipeline in {out_dir}')
    save_pipeline(build_toy_pipeline(kind, vae), out_dir)


def _train_teacher(kind: str, out_dir: str):
    config = find_config(f'toy/{kind}_finetune_toy.py')
    base = resolve_model_path(f'diffkd-toy/{kind}')
    work_dir = tempfile.mkdtemp(prefix=f'{kind}-teacher-',
                                dir=osp.dirname(out_dir))
    _say(f'no cached toy {kind} teacher: training it with {config} '
         f'(first use only; logs in {work_dir})')
    cmd = [sys.executable, find_tool('train.py'), config,
           '--work-dir', work_dir]
    # e.g. 'train_cfg.max_iters=2' for a quick (untrained) teacher in tests.
    extra = os.environ.get('DIFFKD_TOY_TEACHER_OPTIONS', '').split()
    if extra:
        cmd += ['--cfg-options', *extra]
    ret = subprocess.run(cmd, env=dict(os.environ))
    if ret.returncode != 0:
        raise RuntimeError(f'training the toy {kind} teacher failed '
                           f'(exit {ret.returncode}); see {work_dir}')
    shutil.copytree(base, out_dir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('.complete'))
    shutil.rmtree(osp.join(out_dir, 'unet'))
    shutil.copytree(osp.join(work_dir, 'final', 'unet'),
                    osp.join(out_dir, 'unet'))
    # Keep what shows how the teacher was made: its sample grids and log.
    shutil.copytree(osp.join(work_dir, 'vis'), osp.join(out_dir, 'training',
                                                       'vis'))
    for name in os.listdir(work_dir):
        log = osp.join(work_dir, name, f'{name}.log')
        if osp.isfile(log):
            shutil.copy(log, osp.join(out_dir, 'training', 'train.log'))
    shutil.rmtree(work_dir, ignore_errors=True)


for _kind in ('sd15', 'sdxl'):
    register_toy_asset(_kind)(functools.partial(_build_pipeline, _kind))
    register_toy_asset(f'{_kind}-teacher')(
        functools.partial(_train_teacher, _kind))
