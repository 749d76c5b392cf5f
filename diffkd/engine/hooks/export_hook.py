"""Export trained weights in diffusers format beside mmengine's checkpoints.

``<work_dir>/iter_<n>/`` every ``interval`` iterations and
``<work_dir>/final/`` at the end, each with ``unet/`` (config.json +
safetensors) and ``export_info.json`` naming the base pipeline, so plain
``UNet2DConditionModel.from_pretrained`` and ``tools/infer.py`` load it.
Writes are atomic: a folder appears complete or not at all (written under
a temporary name, flushed to disk, renamed); a crash while exporting leaves
the previous export as it was. What a killed export leaves behind is
cleaned when training starts again. Exports get the permissions the
user's umask gives. Under FSDP every rank gathers the weights and rank 0
writes.
"""
import json
import os
import os.path as osp
import re
import secrets
from contextlib import nullcontext
from typing import List, Optional

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from diffkd.registry import HOOKS
from ..checkpoint import fsync_dir, fsync_tree, remove_path
from ..distributed import full_weights

EXPORT_INFO = 'export_info.json'
TMP_PREFIX = '.export-'  # the export being written
OLD_PREFIX = '.export-old-'  # the export being replaced, moved aside
# What export_model makes (8 characters: tempfile's names before, a hex
# token now); ``.old-*`` is where it moved replaced exports before.
_LEFTOVER = re.compile(r'^\.export-(old-)?[a-z0-9_]{8}$')
_LEGACY_OLD = re.compile(r'^\.old-[a-z0-9_]{8}$')


def unwrap(model):
    return model.module if is_model_wrapper(model) else model


def _umask() -> int:
    try:
        with open('/proc/self/status') as f:  # read without changing it
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _make_dir(parent: str, prefix: str) -> str:
    """A new folder with a unique name, made as ``mkdir`` makes folders
    (``tempfile.mkdtemp`` makes them 0700 whatever the umask)."""
    while True:
        path = osp.join(parent, prefix + secrets.token_hex(4))
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def _apply_umask(root: str) -> None:
    """Folders 0777 and files 0666 less the umask, as the user's own tools
    make them; safetensors writes its files 0600."""
    mask = _umask()
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in files:
            path = osp.join(folder, name)
            if not osp.islink(path):
                os.chmod(path, 0o666 & ~mask)


def export_model(model, out_dir: str, step: Optional[int] = None,
                 full_pipeline: bool = False, facts: Optional[dict] = None,
                 work_dir: Optional[str] = None) -> str:
    """Write ``model``'s trained parts to ``out_dir`` atomically; with
    ``full_pipeline``, as a complete pipeline folder with a model card
    (base components hard-linked, see :mod:`diffkd.export`)."""
    parent = osp.dirname(osp.abspath(out_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = _make_dir(parent, TMP_PREFIX)
    try:
        info = model.export_pretrained(tmp)
        info.update(step=step, pipeline_class=model.pipeline_class_name)
        if facts:
            info['run'] = facts
        with open(osp.join(tmp, EXPORT_INFO), 'w') as f:
            json.dump(info, f, indent=2)
        _apply_umask(tmp)
        if full_pipeline:
            # After the umask pass: chmod on a hard link would change the
            # base model's own files.
            _finish(tmp, out_dir, work_dir)
        fsync_tree(tmp)
        old = None
        if osp.exists(out_dir):
            # Kept under its own name: a kill before the next rename is
            # undone by clean_export_leftovers.
            old = _make_dir(parent, OLD_PREFIX)
            os.replace(out_dir, osp.join(old, osp.basename(out_dir)))
        os.replace(tmp, out_dir)
        fsync_dir(parent)
        if old:
            remove_path(old)
    finally:
        if osp.exists(tmp):
            remove_path(tmp)
    return out_dir


def _finish(tmp: str, out_dir: str, work_dir: Optional[str]) -> None:
    """Make ``tmp`` a complete pipeline folder with a model card; on
    failure keep the trained parts (they matter more) and say so."""
    from diffkd.export import finish_export
    try:
        finish_export(tmp, work_dir=work_dir)
    except Exception as err:
        from mmengine.logging import print_log
        print_log(f'{out_dir} holds the trained parts only: completing it '
                  f'into a pipeline folder failed ({type(err).__name__}: '
                  f'{err}); run tools/export_pipeline.py when the base '
                  'model is reachable', logger='current', level=30)


def clean_export_leftovers(work_dir: str, logger=None) -> List[str]:
    """Remove what killed exports left in ``work_dir``: folders being
    written, and replaced exports moved aside (put back first where the
    new one never arrived). Returns the names removed."""
    if not osp.isdir(work_dir):
        return []
    removed = []
    for name in sorted(os.listdir(work_dir)):
        path = osp.join(work_dir, name)
        if not osp.isdir(path) or osp.islink(path):
            continue
        if _LEGACY_OLD.match(name):
            if not osp.isfile(osp.join(path, 'x', EXPORT_INFO)):
                continue  # e.g. a latent cache's, not an export
        elif not _LEFTOVER.match(name):
            continue
        if name.startswith(OLD_PREFIX):
            for kept in os.listdir(path):
                target = osp.join(work_dir, kept)
                if not osp.lexists(target):
                    os.replace(osp.join(path, kept), target)
                    if logger is not None:
                        logger.warning(
                            f'{target}: put back the previous export, '
                            'which an interrupted export had moved aside')
        remove_path(path)
        removed.append(name)
    if removed:
        fsync_dir(work_dir)
        if logger is not None:
            logger.warning(f'removed what an interrupted export left in '
                           f'{work_dir}: {", ".join(removed)}')
    return removed


@HOOKS.register_module()
class DiffusersExportHook(Hook):
    """Export every ``interval`` iterations (0: only at the end).

    ``final/`` is a complete pipeline folder with a model card unless
    ``full_pipeline=False`` (then, like ``iter_<n>/``, the trained parts
    only)."""
    priority = 'LOW'  # after EMA and checkpoint bookkeeping

    def __init__(self, interval: int = 0, save_final: bool = True,
                 full_pipeline: bool = True):
        self.interval = interval
        self.save_final = save_final
        self.full_pipeline = full_pipeline

    def before_train(self, runner):
        if is_main_process():
            clean_export_leftovers(runner.work_dir, runner.logger)

    def _export(self, runner, name: str):
        # Every rank enters (FSDP gathers the shards); rank 0 writes.
        with full_weights(runner.model):
            if not is_main_process():
                return
            model = unwrap(runner.model)
            ema = getattr(runner, 'diffkd_ema', None)
            ctx = ema.swapped(model) if ema is not None else nullcontext()
            with ctx:
                final = name == 'final' and self.full_pipeline
                facts = None
                if final:
                    from diffkd.export import run_facts
                    facts = run_facts(runner.cfg)
                out = export_model(model, osp.join(runner.work_dir, name),
                                   runner.iter, full_pipeline=final,
                                   facts=facts, work_dir=runner.work_dir)
        runner.logger.info(f'exported diffusers weights to {out}')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.interval and self.every_n_train_iters(runner, self.interval) \
                and runner.iter + 1 < runner.max_iters:
            self._export(runner, f'iter_{runner.iter + 1}')

    def after_train(self, runner):
        if self.save_final:
            self._export(runner, 'final')
