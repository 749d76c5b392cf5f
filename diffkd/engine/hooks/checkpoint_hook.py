"""mmengine's CheckpointHook, made safe against crashes and full disks.

mmengine 0.10 writes ``iter_N.pth`` in place, deletes the oldest kept
checkpoint *before* writing the new one and then rewrites
``last_checkpoint`` in place: a crash or a full disk in between can leave a
truncated latest checkpoint, or none at all. Here, in this order:

1. the checkpoint is written under a temporary name in the same folder
   (through the runner's own save, so every runner and strategy works),
   flushed with fsync and renamed onto ``iter_N.pth`` (atomic);
2. ``last_checkpoint`` is replaced atomically to point at it;
3. only then are checkpoints beyond ``max_keep_ckpts`` removed.

A resumed run counts the checkpoints that are in the folder towards
``max_keep_ckpts`` (mmengine counts those its message hub lists, which
leaves out the one the run resumed from: it was never deleted).

A failed write removes its temporary file and raises
:class:`~diffkd.engine.errors.CheckpointWriteError` naming the file and the
previous checkpoint, which is untouched and still what ``--resume`` loads.
"""
import errno
import os
import os.path as osp
import re
from collections import deque

from mmengine.dist import barrier, get_dist_info, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from diffkd.registry import HOOKS
from ..checkpoint import remove_path, replace_durably, write_text_atomic
from ..errors import CheckpointWriteError

TMP_PREFIX = '.tmp-'
LAST_CHECKPOINT = 'last_checkpoint'


def read_last_checkpoint(work_dir: str):
    path = osp.join(work_dir, LAST_CHECKPOINT)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return f.read().strip() or None


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose latest checkpoint is never
    half-written or lost; see the module docstring."""

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if hasattr(self, 'keep_ckpt_ids'):
            # mmengine's deque drops entries silently at maxlen; trimming
            # is done explicitly, after a new checkpoint is safe.
            self.keep_ckpt_ids = deque(self.keep_ckpt_ids)
            if runner.iter > 0 or runner.epoch > 0:  # resumed
                on_disk = self._steps_on_disk()
                if on_disk is not None:
                    self.keep_ckpt_ids = deque(on_disk)
        if self._local() and is_main_process() and osp.isdir(self.out_dir):
            for name in os.listdir(self.out_dir):
                if name.startswith(TMP_PREFIX):  # left by a killed run
                    remove_path(osp.join(self.out_dir, name))

    def _steps_on_disk(self):
        """The steps of the checkpoints in the folder, oldest first; None
        when that cannot be told (remote storage, an unusual name
        template)."""
        if not self._local() or self.filename_tmpl.count('{}') != 1:
            return None
        pattern = re.compile(
            re.escape(self.filename_tmpl).replace(re.escape('{}'), r'(\d+)'))
        if not osp.isdir(self.out_dir):
            return []
        return sorted(int(m.group(1)) for m in map(
            pattern.fullmatch, os.listdir(self.out_dir)) if m)

    def _local(self) -> bool:
        return isinstance(getattr(self, 'file_backend', None), LocalBackend)

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._local():  # remote storage: mmengine's own behaviour
            return super()._save_checkpoint_with_step(runner, step, meta)
        filename = self.filename_tmpl.format(step)
        final = osp.join(self.out_dir, filename)
        tmp_name = f'{TMP_PREFIX}{filename}'
        tmp = osp.join(self.out_dir, tmp_name)
        previous = read_last_checkpoint(runner.work_dir)
        _, world = get_dist_info()
        target = final
        try:
            if is_main_process():
                os.makedirs(self.out_dir, exist_ok=True)
                remove_path(tmp)
            if world > 1:
                barrier()
            runner.save_checkpoint(
                self.out_dir,
                tmp_name,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
            if world > 1:
                barrier()  # every rank's part (sharded strategies) is in
            if is_main_process():
                replace_durably(tmp, final)
                target = osp.join(runner.work_dir, LAST_CHECKPOINT)
                write_text_atomic(target, final)
        except BaseException as err:
            if is_main_process():
                remove_path(tmp)
            if isinstance(err, OSError):
                raise CheckpointWriteError(
                    self._write_error(err, target, previous)) from err
            raise

        self.last_ckpt = final
        runner.message_hub.update_info('last_ckpt', final)
        if self.max_keep_ckpts > 0:
            if step in self.keep_ckpt_ids:  # rewritten: now the newest
                self.keep_ckpt_ids.remove(step)
            self.keep_ckpt_ids.append(step)
            while len(self.keep_ckpt_ids) > self.max_keep_ckpts:
                old = self.keep_ckpt_ids.popleft()
                if is_main_process():
                    remove_path(
                        osp.join(self.out_dir, self.filename_tmpl.format(old)))
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

    @staticmethod
    def _write_error(err: OSError, path: str, previous) -> str:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            what = f'no space left on device while writing {path}'
        else:
            what = f'could not write {path}: {err}'
        if previous and osp.exists(previous):
            state = (f'the previous checkpoint {previous} is intact and is '
                     'what --resume loads')
        else:
            state = 'no earlier checkpoint exists'
        return f'{what}; {state}'
