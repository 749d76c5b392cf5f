"""The toy teachers: base toy pipelines with a UNet trained by diffkd's own
fine-tune configs (``configs/toy/<kind>_finetune_toy.py``).

Training one takes minutes, so the trained UNets ship with the package
(``diffkd/toy/weights/<kind>-teacher``, fp16 safetensors) together with
``training.json``: the config, the sha256 of its effective training keys,
the iterations and the date. Building the ``<kind>-teacher`` asset copies
that UNet (in fp32); retraining runs ``tools/train.py`` on the config, and
:func:`retrain_shipped_teachers` (``python tools/build_toy_world.py
--retrain-teachers``) writes the result back as the shipped weights.
"""
import argparse
import datetime
import hashlib
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence

from diffkd.utils.hub import toy_asset_dir
from diffkd.utils.paths import find_config, find_tool

TEACHER_KINDS = ('sd15', 'sdxl')
# The step-distilled toy teacher (asset sdxl-teacher-lcm), built on demand.
STEP_DISTILLED_CONFIG = 'toy/sdxl_lcm_teacher_toy.py'
WEIGHTS_DIR = osp.join(osp.dirname(osp.abspath(__file__)), 'weights')
RECORD = 'training.json'
# Every shipped file stays small enough for a source repository.
MAX_SHIPPED_BYTES = 5_000_000
RETRAIN_COMMAND = 'python tools/build_toy_world.py --retrain-teachers'
RETRAIN_TIME = 'about 8 minutes on 2 idle CPU cores'
# Extra --cfg-options for a teacher's training run, e.g.
# 'train_cfg.max_iters=2' for a quick (untrained) teacher in tests.
OPTIONS_ENV = 'DIFFKD_TOY_TEACHER_OPTIONS'


def _say(msg: str):
    print(f'[diffkd toy] {msg}', flush=True)


def teacher_config(kind: str) -> str:
    """Path of the fine-tune config that trains the toy ``kind`` teacher."""
    if kind not in TEACHER_KINDS:
        raise KeyError(f'no toy teacher {kind!r}; known: {TEACHER_KINDS}')
    return find_config(f'toy/{kind}_finetune_toy.py')


def teacher_options() -> List[str]:
    """The ``key=value`` overrides from ``$DIFFKD_TOY_TEACHER_OPTIONS``."""
    return os.environ.get(OPTIONS_ENV, '').split()


def effective_teacher_config(kind: str, options: Sequence[str] = ()):
    """The teacher's config as ``tools/train.py`` reads it, with
    ``--cfg-options`` ``options`` applied."""
    from mmengine.config import Config, DictAction
    cfg = Config.fromfile(teacher_config(kind))
    if options:
        # Parsed exactly as tools/train.py parses --cfg-options.
        parser = argparse.ArgumentParser()
        parser.add_argument('--cfg-options', nargs='+', action=DictAction)
        cfg.merge_from_dict(
            parser.parse_args(['--cfg-options', *options]).cfg_options)
    return cfg


def teacher_config_digest(kind: str, options: Sequence[str] = ()) -> str:
    """sha256 of the effective config's training keys (``test_*`` and
    ``val_*`` are left out: they do not change the trained weights)."""
    cfg = effective_teacher_config(kind, options).to_dict()
    train = {k: v for k, v in cfg.items()
             if not k.startswith(('test_', 'val_'))}
    text = json.dumps(train, sort_keys=True, default=_stable_repr)
    return hashlib.sha256(text.encode()).hexdigest()


def _stable_repr(value) -> str:
    """A config value JSON cannot hold (a type, a function, a dtype...),
    named without its memory address."""
    name = getattr(value, '__qualname__', None)
    if name is not None:
        return f'{getattr(value, "__module__", "")}.{name}'
    return repr(value)


def training_record(kind: str, options: Sequence[str] = (),
                    trained: Optional[str] = None) -> Dict:
    """What ``training.json`` says about a teacher trained now (or at
    ``trained``, an ISO date) with ``options``."""
    import diffusers
    import torch
    cfg = effective_teacher_config(kind, options)
    return dict(
        config=f'configs/toy/{kind}_finetune_toy.py',
        config_sha256=teacher_config_digest(kind, options),
        cfg_options=list(options),
        iterations=int(cfg.train_cfg.max_iters),
        trained=trained or datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec='seconds'),
        torch=torch.__version__,
        diffusers=diffusers.__version__,
        regenerate=RETRAIN_COMMAND)


def shipped_teacher_dir(kind: str, weights_dir: Optional[str] = None) -> str:
    return osp.join(weights_dir or WEIGHTS_DIR, f'{kind}-teacher')


def has_shipped_teacher(kind: str, weights_dir: Optional[str] = None) -> bool:
    return _has_weights(shipped_teacher_dir(kind, weights_dir))


def _has_weights(folder: str) -> bool:
    return all(
        osp.isfile(osp.join(folder, f))
        for f in ('config.json', 'diffusion_pytorch_model.safetensors',
                  RECORD))


def shipped_teacher_problem(kind: str,
                            weights_dir: Optional[str] = None
                            ) -> Optional[str]:
    """None when the shipped ``kind`` teacher matches its config as it is
    now; else what is wrong and the command that regenerates it."""
    folder = shipped_teacher_dir(kind, weights_dir)
    fix = (f'regenerate it with: {RETRAIN_COMMAND} ({RETRAIN_TIME}) and '
           f'commit {folder}')
    if not _has_weights(folder):
        return (f'no shipped toy {kind} teacher in {folder} (config.json, '
                f'diffusion_pytorch_model.safetensors, {RECORD}); {fix}')
    with open(osp.join(folder, RECORD)) as f:
        record = json.load(f)
    now = teacher_config_digest(kind)
    if record.get('config_sha256') != now:
        extra = (f' with --cfg-options {" ".join(record["cfg_options"])}'
                 if record.get('cfg_options') else '')
        return (f'the shipped toy {kind} teacher ({folder}) was trained '
                f'with another effective config{extra} than '
                f'{record.get("config")} gives now (recorded sha256 '
                f'{record.get("config_sha256")}, now {now}); {fix}')
    return None


def _copy_base(kind: str, out_dir: str, home: str):
    """The base toy pipeline without its UNet."""
    shutil.copytree(toy_asset_dir(kind, home), out_dir, dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns('.complete', 'unet'))
    os.makedirs(osp.join(out_dir, 'training'), exist_ok=True)


def install_shipped_teacher(kind: str, out_dir: str, home: str,
                            weights_dir: Optional[str] = None):
    """Write the ``kind``-teacher asset: the base pipeline with the shipped
    UNet in fp32."""
    import torch
    from diffusers import UNet2DConditionModel
    src = shipped_teacher_dir(kind, weights_dir)
    _say(f'toy {kind} teacher: the base pipeline with the shipped UNet '
         f'from {src}')
    try:
        problem = shipped_teacher_problem(kind, weights_dir)
    except FileNotFoundError:  # no configs/ next to the package to compare
        problem = None
    if problem:
        _say(f'warning: {problem}')
    _copy_base(kind, out_dir, home)
    unet = UNet2DConditionModel.from_pretrained(src, torch_dtype=torch.float32)
    unet.save_pretrained(osp.join(out_dir, 'unet'))
    shutil.copy(osp.join(src, RECORD), osp.join(out_dir, 'training', RECORD))


def train_teacher(kind: str, out_dir: str, home: str):
    """Write the ``kind``-teacher asset: the base pipeline with a UNet
    trained by ``tools/train.py`` on the teacher's fine-tune config (in
    ``home``'s toy world), its sample grids, log and ``training.json``."""
    options = teacher_options()
    _train_asset(teacher_config(kind), kind, f'{kind} teacher', out_dir,
                 home, options, ('unet', ),
                 lambda: training_record(kind, options))


def train_step_distilled_teacher(out_dir: str, home: str):
    """Write the ``sdxl-teacher-lcm`` asset: the toy SDXL teacher's pipeline
    with the UNet and ``LCMScheduler`` of a consistency-distillation run of
    :data:`STEP_DISTILLED_CONFIG` from it (a few minutes on 2 CPU cores;
    ``$DIFFKD_TOY_TEACHER_OPTIONS`` applies), its sample grids and log."""
    options = teacher_options()
    config = find_config(STEP_DISTILLED_CONFIG)

    def record():
        import diffusers
        import torch
        return dict(
            config=f'configs/{STEP_DISTILLED_CONFIG}', cfg_options=options,
            trained=datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec='seconds'),
            torch=torch.__version__, diffusers=diffusers.__version__)

    _train_asset(config, 'sdxl', 'step-distilled sdxl teacher', out_dir,
                 home, options, ('unet', 'scheduler'), record)


def _name_parts_in_model_index(folder: str, parts: Sequence[str]):
    """``model_index.json`` names each replaced part's class (e.g. an
    LCMScheduler in place of the base pipeline's Euler scheduler), so
    ``DiffusionPipeline.from_pretrained`` loads it as what it is."""
    index_path = osp.join(folder, 'model_index.json')
    with open(index_path) as f:
        index = json.load(f)
    for part in parts:
        for name in ('config.json', 'scheduler_config.json'):
            config = osp.join(folder, part, name)
            if osp.isfile(config) and part in index:
                with open(config) as f:
                    index[part] = ['diffusers', json.load(f)['_class_name']]
    with open(index_path, 'w') as f:
        json.dump(index, f, indent=2)


def _train_asset(config: str, base: str, what: str, out_dir: str, home: str,
                 options: Sequence[str], parts: Sequence[str], record):
    """Run ``tools/train.py`` on ``config`` in ``home``'s toy world; write
    the ``base`` pipeline with the exported ``parts`` to ``out_dir``."""
    work_dir = tempfile.mkdtemp(prefix=f'.{osp.basename(out_dir)}-train-',
                                dir=osp.dirname(out_dir))
    _say(f'training the toy {what} with {config} (logs in {work_dir})')
    cmd = [sys.executable, find_tool('train.py'), config,
           '--work-dir', work_dir]
    if options:
        cmd += ['--cfg-options', *options]
    try:
        ret = subprocess.run(cmd, env=dict(os.environ, DIFFKD_HOME=home))
        if ret.returncode != 0:
            raise RuntimeError(f'training the toy {what} failed '
                               f'(exit {ret.returncode}); see {work_dir}')
        _copy_base(base, out_dir, home)
        for part in parts:
            shutil.rmtree(osp.join(out_dir, part), ignore_errors=True)
            shutil.copytree(osp.join(work_dir, 'final', part),
                            osp.join(out_dir, part))
        _name_parts_in_model_index(out_dir, parts)
        # Keep what shows how the model was made: sample grids and log.
        if osp.isdir(osp.join(work_dir, 'vis')):
            shutil.copytree(osp.join(work_dir, 'vis'),
                            osp.join(out_dir, 'training', 'vis'))
        for name in os.listdir(work_dir):
            log = osp.join(work_dir, name, f'{name}.log')
            if osp.isfile(log):
                shutil.copy(log, osp.join(out_dir, 'training', 'train.log'))
        with open(osp.join(out_dir, 'training', RECORD), 'w') as f:
            json.dump(record(), f, indent=2)
    except BaseException:
        _say(f'the failed run is kept in {work_dir}')
        raise
    shutil.rmtree(work_dir, ignore_errors=True)


def ship_teacher(kind: str, asset_dir: str,
                 weights_dir: Optional[str] = None) -> str:
    """Write a built ``kind``-teacher asset's UNet (fp16) and its
    ``training.json`` as the shipped teacher; returns the folder."""
    import torch
    from diffusers import UNet2DConditionModel
    record = osp.join(asset_dir, 'training', RECORD)
    if not osp.isfile(record):
        raise FileNotFoundError(
            f'{asset_dir} has no training/{RECORD}: only a teacher trained '
            f'by the build ({RETRAIN_COMMAND}) can be shipped')
    unet = UNet2DConditionModel.from_pretrained(
        asset_dir, subfolder='unet', torch_dtype=torch.float16)
    bad = [n for n, p in unet.state_dict().items()
           if not torch.isfinite(p).all()]
    if bad:
        raise ValueError(f'the toy {kind} teacher in {asset_dir} does not '
                         f'fit fp16: {bad[:5]} overflow')
    dst = shipped_teacher_dir(kind, weights_dir)
    tmp = dst + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    unet.save_pretrained(tmp)
    shutil.copy(record, osp.join(tmp, RECORD))
    for name in os.listdir(tmp):
        size = osp.getsize(osp.join(tmp, name))
        if size > MAX_SHIPPED_BYTES:
            shutil.rmtree(tmp)
            raise ValueError(
                f'shipped toy {kind} teacher file {name} would be {size} '
                f'bytes (> {MAX_SHIPPED_BYTES}); the toy UNet grew')
    if osp.exists(dst):
        shutil.rmtree(dst)
    os.replace(tmp, dst)
    _say(f'shipped the toy {kind} teacher in {dst}')
    return dst
