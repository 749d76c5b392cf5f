"""The toy world's cached assets (``diffkd-toy/<name>``) and their build.

- ``shapes`` / ``shapes-val``: captioned shape datasets (imagefolder).
- ``shapes-shards``: captioned shapes at square, landscape and portrait
  sizes, as WebDataset shards (``{00000..00015}.tar``).
- ``sks-circle``: five photos of the DreamBooth concept (a red ring).
- ``vae``: the toy VAE (shipped weights; retrained if they are missing).
- ``sd15`` / ``sdxl``: base pipelines: toy VAE, random text encoders and a
  random UNet of the real topology.
- ``sd15-teacher`` / ``sdxl-teacher``: the base pipelines with a UNet
  trained by diffkd's own fine-tune config (``configs/toy/*_finetune_toy.py``;
  shipped weights, see :mod:`diffkd.toy.teachers`).
- ``sdxl-teacher-lcm``: the step-distilled toy teacher (the toy's
  SDXL-Lightning), consistency-distilled from ``sdxl-teacher`` by
  ``configs/toy/sdxl_lcm_teacher_toy.py``; trained when asked for by name
  (minutes), never by a build of the whole world.

:func:`build_toy_world` (``python tools/build_toy_world.py``) builds them in
``$DIFFKD_HOME/toy``; :func:`diffkd.utils.hub.resolve_model_path` only looks
them up.
"""
import functools
import os.path as osp
import random
import shutil
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import numpy as np

from diffkd.utils.hub import build_folder, diffkd_home, toy_asset_dir
from . import teachers
from .concept import make_concept_images
from .shapes import (all_combinations, make_multiaspect_shards,
                     make_shapes_dataset, render_shape)

SHIPPED_VAE = osp.join(teachers.WEIGHTS_DIR, 'vae')


def _say(msg: str):
    print(f'[diffkd toy] {msg}', flush=True)


class _Build(NamedTuple):
    home: str
    retrain_teachers: bool
    weights_dir: Optional[str]


def _shapes(out_dir: str, build: _Build):
    _say(f'writing the toy shapes dataset (2048 images) to {out_dir}')
    make_shapes_dataset(out_dir, num_images=2048, size=32, seed=0)


def _shapes_shards(out_dir: str, build: _Build):
    _say(f'writing the multi-aspect toy shapes (512 images) as shards to '
         f'{out_dir}')
    make_multiaspect_shards(out_dir, num_images=512, samples_per_shard=32)


def _shapes_val(out_dir: str, build: _Build):
    make_shapes_dataset(out_dir, num_images=90, size=32, seed=1)


def _concept(out_dir: str, build: _Build):
    make_concept_images(out_dir, num_images=5, seed=0)


def _vae(out_dir: str, build: _Build):
    if osp.exists(osp.join(SHIPPED_VAE, 'config.json')):
        shutil.copytree(SHIPPED_VAE, out_dir, dirs_exist_ok=True)
        return
    from .pipelines import train_toy_vae
    rng = random.Random(0)
    combos = all_combinations()
    images = np.stack([
        np.asarray(render_shape(*combos[i % len(combos)], 32, rng))
        for i in range(512)
    ])
    _say(f'no shipped toy VAE in {SHIPPED_VAE}: training it')

    def progress(step, loss):
        if step % 200 == 0:
            _say(f'  vae step {step}: reconstruction loss {loss:.4f}')

    train_toy_vae(images, progress=progress).save_pretrained(out_dir)


def _pipeline(kind: str, out_dir: str, build: _Build):
    from diffusers import AutoencoderKL
    from .pipelines import build_toy_pipeline, save_pipeline
    vae = AutoencoderKL.from_pretrained(toy_asset_dir('vae', build.home))
    _say(f'assembling the toy {kind} pipeline in {out_dir}')
    save_pipeline(build_toy_pipeline(kind, vae), out_dir)


def _trains(name: str, retrain_teachers: bool,
            weights_dir: Optional[str]) -> bool:
    """Whether building asset ``name`` trains a teacher."""
    if name not in TEACHER_ASSETS:
        return False
    kind = name[:-len('-teacher')]
    return retrain_teachers or not teachers.has_shipped_teacher(
        kind, weights_dir)


def _teacher(kind: str, out_dir: str, build: _Build):
    if _trains(f'{kind}-teacher', build.retrain_teachers, build.weights_dir):
        if not build.retrain_teachers:
            _say(f'no shipped toy {kind} teacher in '
                 f'{teachers.shipped_teacher_dir(kind, build.weights_dir)}: '
                 'training it')
        teachers.train_teacher(kind, out_dir, build.home)
    else:
        teachers.install_shipped_teacher(kind, out_dir, build.home,
                                         build.weights_dir)


def _step_distilled_teacher(out_dir: str, build: _Build):
    teachers.train_step_distilled_teacher(out_dir, build.home)


class ToyAsset(NamedTuple):
    build: Callable[[str, _Build], None]
    # Assets it reads; a trained teacher also reads its training data and
    # its held-out validation images (configs/_base_/datasets/toy_shapes.py).
    needs: Sequence[str] = ()
    needs_to_train: Sequence[str] = ()
    # Built only when named (it trains for minutes).
    on_demand: bool = False


# In build order: an asset comes after the ones it needs.
TOY_ASSETS: Dict[str, ToyAsset] = {
    'shapes': ToyAsset(_shapes),
    'shapes-val': ToyAsset(_shapes_val),
    'shapes-shards': ToyAsset(_shapes_shards),
    'sks-circle': ToyAsset(_concept),
    'vae': ToyAsset(_vae),
}
for _kind in teachers.TEACHER_KINDS:
    TOY_ASSETS[_kind] = ToyAsset(functools.partial(_pipeline, _kind),
                                 needs=('vae', ))
for _kind in teachers.TEACHER_KINDS:
    TOY_ASSETS[f'{_kind}-teacher'] = ToyAsset(
        functools.partial(_teacher, _kind), needs=(_kind, ),
        needs_to_train=('shapes', 'shapes-val'))
TEACHER_ASSETS = tuple(f'{k}-teacher' for k in teachers.TEACHER_KINDS)
TOY_ASSETS['sdxl-teacher-lcm'] = ToyAsset(
    _step_distilled_teacher, needs=('sdxl-teacher', 'shapes'),
    on_demand=True)


def toy_asset_names() -> List[str]:
    return list(TOY_ASSETS)


def build_toy_world(names: Optional[Sequence[str]] = None,
                    home: Optional[str] = None,
                    retrain_teachers: bool = False,
                    weights_dir: Optional[str] = None) -> Dict[str, str]:
    """Build the toy assets ``names`` (default: all but the on-demand ones)
    and the ones they need in ``home`` (default ``$DIFFKD_HOME``); already
    built ones are kept.

    Args:
        retrain_teachers: train the teacher assets among them with their
            fine-tune configs (replacing built ones) instead of copying the
            shipped UNets.
        weights_dir: where the shipped teachers are (default
            ``diffkd/toy/weights``).

    Returns:
        ``{name: folder}`` of every asset built or found, in build order.
    """
    home = osp.abspath(osp.expanduser(home or diffkd_home()))
    wanted = [n for n, a in TOY_ASSETS.items() if not a.on_demand] \
        if names is None else list(names)
    unknown = [n for n in wanted if n not in TOY_ASSETS]
    if unknown:
        raise KeyError(f'unknown toy asset(s) {unknown}; known: '
                       f'{toy_asset_names()}')
    closure, todo = set(), list(wanted)
    while todo:
        name = todo.pop()
        if name not in closure:
            closure.add(name)
            asset = TOY_ASSETS[name]
            todo += list(asset.needs)
            if _trains(name, retrain_teachers, weights_dir):
                todo += list(asset.needs_to_train)
    build = _Build(home, retrain_teachers, weights_dir)
    paths = {}
    for name in TOY_ASSETS:
        if name not in closure:
            continue
        path = toy_asset_dir(name, home)
        build_folder(
            path,
            functools.partial(TOY_ASSETS[name].build, build=build),
            rebuild=retrain_teachers and name in TEACHER_ASSETS,
            on_wait=lambda name=name, path=path: _say(
                f'{name} is being built by another process ({path}.lock); '
                'waiting for it'))
        paths[name] = path
    return paths


def retrain_shipped_teachers(kinds: Optional[Sequence[str]] = None,
                             home: Optional[str] = None,
                             weights_dir: Optional[str] = None
                             ) -> Dict[str, str]:
    """Retrain the toy teachers ``kinds`` (default: both) with their
    fine-tune configs and ship them (fp16 UNet + ``training.json`` in
    ``weights_dir``, default ``diffkd/toy/weights``). Returns
    ``{kind: shipped folder}``."""
    kinds = list(teachers.TEACHER_KINDS if kinds is None else kinds)
    paths = build_toy_world([f'{k}-teacher' for k in kinds], home,
                            retrain_teachers=True, weights_dir=weights_dir)
    return {
        k: teachers.ship_teacher(k, paths[f'{k}-teacher'], weights_dir)
        for k in kinds
    }
