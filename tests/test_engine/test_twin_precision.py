"""Every toy twin trains in its real config's precision.

The real configs run the teacher in bf16/fp16, train under mixed precision
and often with gradient checkpointing; some toy twins keep fp32 on the CPU
(tests/test_config_parity.py says which and why). Here each twin gets its
real config's precision back (``optim_wrapper.dtype``, the teacher's
``dtype``, gradient checkpointing) and trains for one iteration on the
untrained toy pipelines as tools/train.py builds them, with the real config's
hooks, so CI runs that path for every twin. Without CUDA,
DiffusionOptimWrapper runs a float16 config as bf16 autocast.
"""
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from diffkd.apis.config import train_config
from diffkd.apis.train import build_runner
from diffkd.engine import DiffusionOptimWrapper
from diffkd.engine.hooks import SignalCheckpointHook
from diffkd.engine.hooks.export_hook import unwrap
from tests.test_config_parity import MISSING, PRECISION, TOY_DIR, TWINS, flat

_RUNS = {}
# The real precision's forward, backward, step, validation and export.
ITERS = 1


def real_precision(toy: str) -> dict:
    """The real config's value of every precision key that the real config
    or the twin sets (MISSING: the real config does not set it)."""
    real, mine = flat(TWINS[toy]), flat(osp.join(TOY_DIR, toy))
    return {k: real.get(k, MISSING) for k in PRECISION
            if k in real or k in mine}


def _set(cfg, key: str, value):
    *path, last = key.split('.')
    node = cfg
    for part in path:
        node = node[part]
    if value is MISSING:
        node.pop(last, None)
    else:
        node[last] = value


def _shrink(cfg, tmp, paths):
    """One iteration of batch 2 on the untrained toy pipelines; the real
    config's hooks stay, sampling one prompt in two steps. The held-out
    validation is the toy world's, not the real config's: left out."""
    def swap(obj):
        if isinstance(obj, dict):
            return type(obj)({k: swap(v) for k, v in obj.items()})
        if isinstance(obj, list):
            return [swap(v) for v in obj]
        if isinstance(obj, str):
            for name, path in paths.items():
                if obj == name or obj.startswith(name + '/'):
                    return path() + obj[len(name):]
        return obj

    for key in ('model', 'train_dataloader'):
        cfg[key] = swap(cfg[key])
    cfg.train_cfg.max_iters = ITERS
    if cfg.train_dataloader.get('batch_size') is None:  # a stream batches
        cfg.train_dataloader.dataset.batch_size = 2
    else:
        cfg.train_dataloader.batch_size = 2
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg.default_hooks.logger.interval = 1
    for hook in cfg.custom_hooks:
        if hook.type == 'VisualizationHook':
            hook.update(prompts=hook.prompts[:1], num_inference_steps=2)
    dataset = cfg.train_dataloader.dataset
    if dataset.type == 'DreamBoothDataset':
        dataset.num_class_images = 2
        dataset.class_data_dir = str(tmp / 'class_images')
        dataset.class_image_generation.num_inference_steps = 1


def _transplant_first(cfg, tmp):
    """A student LoRA that starts from the teacher's transplanted
    (ssd_1b_lora_transplant_toy.py): the file tools/transplant_lora.py
    writes before that run, from the teacher LoRA run of this test."""
    lora = cfg.model.get('student', {}).get('lora') or {}
    if not (lora.get('weights') and cfg.model.teacher.get('lora')):
        return
    from diffkd.export.transplant import (teacher_unet_config,
                                          transplant_lora_file)
    from diffkd.models.lora import lora_file
    lora.weights = str(tmp / 'transplanted_lora.safetensors')
    transplant_lora_file(lora_file(cfg.model.teacher.lora),
                         teacher_unet_config(cfg.model.teacher.model),
                         lora.weights, cfg.model.compression)


def train_twin(toy: str, tmp_factory, toy_sd15, toy_sdxl):
    """Train ``toy`` in its real precision (once); its runner."""
    if toy in _RUNS:
        return _RUNS[toy]
    tmp = tmp_factory.mktemp(osp.splitext(osp.basename(toy))[0])
    cfg = Config.fromfile(osp.join(TOY_DIR, toy))
    for key, value in real_precision(toy).items():
        _set(cfg, key, value)
    # Other toy runs' outputs (work_dirs/<twin>/final/...) come from this
    # test's own runs of those twins.
    paths = {'diffkd-toy/sdxl-teacher': lambda: toy_sdxl,
             # the step-distilled toy teacher, built on demand only
             'diffkd-toy/sdxl-teacher-lcm': lambda: toy_sdxl,
             'diffkd-toy/sd15-teacher': lambda: toy_sd15}
    for other in TWINS:
        name = osp.splitext(osp.basename(other))[0]
        paths[f'work_dirs/{name}'] = (
            lambda o=other: train_twin(o, tmp_factory, toy_sd15,
                                       toy_sdxl).work_dir)
    _shrink(cfg, tmp, paths)
    _transplant_first(cfg, tmp)
    path = str(tmp / osp.basename(toy))
    cfg.dump(path)
    # What tools/train.py builds from the file.
    runner = build_runner(train_config(path, work_dir=str(tmp / 'work')))
    # One thread: on shared cores, OpenMP threads waiting for each other
    # make every small kernel slow.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runner.train()
    finally:
        torch.set_num_threads(threads)
        for hook in runner.hooks:
            if isinstance(hook, SignalCheckpointHook):
                hook.restore()
    _RUNS[toy] = runner
    return runner


@pytest.mark.parametrize('toy', sorted(TWINS))
def test_twin_trains_in_its_real_precision(toy, tmp_path_factory, toy_sd15,
                                           toy_sdxl):
    if TWINS[toy] is None:
        pytest.skip('no real parent (tests/test_config_parity.py)')
    runner = train_twin(toy, tmp_path_factory, toy_sd15, toy_sdxl)
    real = flat(TWINS[toy])
    assert runner.iter == ITERS
    loss = runner.message_hub.get_scalar('train/loss').current()
    assert math.isfinite(loss), loss
    assert osp.isfile(osp.join(runner.work_dir, 'final', 'export_info.json'))
    model = unwrap(runner.model)
    cuda = torch.cuda.is_available()
    # DiffusionOptimWrapper's autocast: float16 has no fast CPU kernels, so
    # it runs as bf16 there.
    autocast = {None: None, 'float32': None, 'bfloat16': torch.bfloat16,
                'float16': torch.float16 if cuda else torch.bfloat16}
    wrapper = runner.optim_wrapper
    assert isinstance(wrapper, DiffusionOptimWrapper)
    assert wrapper.cast_dtype == autocast[real.get('optim_wrapper.dtype')]
    dtype = real.get('model.teacher.dtype')
    if hasattr(model, 'teacher'):
        want = getattr(torch, dtype) if dtype else torch.float32
        assert next(model.teacher.parameters()).dtype == want
    student = model.student if hasattr(model, 'student') else model
    ckpt = real.get('model.student.gradient_checkpointing',
                    real.get('model.gradient_checkpointing', False))
    assert student.unet.is_gradient_checkpointing == ckpt
