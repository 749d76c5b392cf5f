"""Export trained weights in diffusers format beside mmengine's checkpoints.

``<work_dir>/iter_<n>/`` every ``interval`` iterations and
``<work_dir>/final/`` at the end, each with ``unet/`` (config.json +
safetensors) and ``export_info.json`` naming the base pipeline, so plain
``UNet2DConditionModel.from_pretrained`` and ``tools/infer.py`` load it.
Writes are atomic: a folder appears complete or not at all (written under
a temporary name, flushed to disk, renamed); a crash while exporting leaves
the previous export as it was. Under FSDP every rank gathers the weights
and rank 0 writes.
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from contextlib import nullcontext
from typing import Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from diffkd.registry import HOOKS
from ..checkpoint import fsync_dir, fsync_tree
from ..distributed import full_weights

EXPORT_INFO = 'export_info.json'


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


def export_model(model, out_dir: str, step: Optional[int] = None) -> str:
    """Write ``model``'s trained parts to ``out_dir`` atomically."""
    parent = osp.dirname(osp.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.export-', dir=parent)
    try:
        info = model.export_pretrained(tmp)
        info.update(step=step, pipeline_class=model.pipeline_class_name)
        with open(osp.join(tmp, EXPORT_INFO), 'w') as f:
            json.dump(info, f, indent=2)
        fsync_tree(tmp)
        old = None
        if osp.exists(out_dir):
            old = tempfile.mkdtemp(prefix='.old-', dir=parent)
            os.replace(out_dir, osp.join(old, 'x'))
        os.replace(tmp, out_dir)
        fsync_dir(parent)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if osp.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


@HOOKS.register_module()
class DiffusersExportHook(Hook):
    """Export every ``interval`` iterations (0: only at the end)."""
    priority = 'LOW'  # after EMA and checkpoint bookkeeping

    def __init__(self, interval: int = 0, save_final: bool = True):
        self.interval = interval
        self.save_final = save_final

    def _export(self, runner, name: str):
        # Every rank enters (FSDP gathers the shards); rank 0 writes.
        with full_weights(runner.model):
            if not is_main_process():
                return
            model = unwrap(runner.model)
            ema = getattr(runner, 'diffkd_ema', None)
            ctx = ema.swapped(model) if ema is not None else nullcontext()
            with ctx:
                out = export_model(model, osp.join(runner.work_dir, name),
                                   runner.iter)
        runner.logger.info(f'exported diffusers weights to {out}')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.interval and self.every_n_train_iters(runner, self.interval) \
                and runner.iter + 1 < runner.max_iters:
            self._export(runner, f'iter_{runner.iter + 1}')

    def after_train(self, runner):
        if self.save_final:
            self._export(runner, 'final')
