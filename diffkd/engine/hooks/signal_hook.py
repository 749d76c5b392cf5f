"""Stop on SIGTERM/SIGINT with a resumable checkpoint.

Schedulers (SLURM preemption, ``scancel``, Kubernetes) send SIGTERM and
kill a little later; Ctrl-C sends SIGINT. Either way the running iteration
is finished, a checkpoint is written through the run's CheckpointHook (same
file names, ``last_checkpoint`` updated, so ``--resume`` finds it) and the
run stops with :class:`~diffkd.engine.errors.TrainingInterrupted`, which
``tools/train.py`` turns into exit status 143 (SIGTERM) or 130 (SIGINT).
A second signal has its usual effect at once.
"""
import logging
import os.path as osp
import signal
import threading
from typing import Sequence, Union

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log

from diffkd.registry import HOOKS
from ..errors import TrainingInterrupted


@HOOKS.register_module()
class SignalCheckpointHook(Hook):
    """Checkpoint and stop at the end of the iteration a signal arrives in.

    Args:
        signals: signal names or numbers to handle (``[]``: none).

    With several processes the ranks agree through a small all-reduce that
    is started after one iteration and read after the next (no wait for
    it), so they stop together one iteration after the signal.
    """
    priority = 'LOWEST'  # after the regular checkpoint of the iteration

    def __init__(self,
                 signals: Sequence[Union[str, int]] = ('SIGTERM', 'SIGINT')):
        self.signals = [
            signal.Signals[s] if isinstance(s, str) else signal.Signals(s)
            for s in signals
        ]
        self.received = 0
        self._previous = {}
        self._work = None
        self._flag = None

    # ------------------------------------------------------------ handlers
    def before_train(self, runner) -> None:
        if not self.signals:
            return
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning('training is not in the main thread: '
                                  'SIGTERM/SIGINT are not handled')
            return
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.received = signum
        self.restore()  # a second signal acts at once
        print_log(
            f'received {signal.Signals(signum).name}: a checkpoint is '
            'written at the end of this iteration, then training stops '
            '(send the signal again to stop at once)',
            logger='current', level=logging.WARNING)

    def restore(self) -> None:
        """Put back the handlers found at ``before_train`` (also called by
        tools/train.py when training ends with an error)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def after_train(self, runner) -> None:
        if self._work is not None:
            self._work.wait()
            self._work = None
        self.restore()

    # ------------------------------------------------------------ stopping
    def _agreed_signal(self) -> int:
        _, world = get_dist_info()
        if world == 1:
            return self.received
        agreed = 0
        if self._work is not None:
            self._work.wait()
            agreed = int(self._flag.item())
        device = (torch.device('cuda', torch.cuda.current_device())
                  if torch_dist.get_backend() == 'nccl' else 'cpu')
        self._flag = torch.tensor([self.received], device=device)
        self._work = torch_dist.all_reduce(
            self._flag, op=torch_dist.ReduceOp.MAX, async_op=True)
        return agreed

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        signum = self._agreed_signal()
        if not signum:
            return
        if self._work is not None:
            self._work.wait()
            self._work = None
        step = runner.iter + 1
        path = self._save(runner, step)
        self.restore()
        name = signal.Signals(signum).name
        saved = (f'checkpoint {path} written' if path else
                 'no CheckpointHook, nothing saved')
        message = (f'received {name}: stopped after iteration {step} of '
                   f'{runner.max_iters}; {saved}; continue with '
                   f'tools/train.py CONFIG --work-dir {runner.work_dir} '
                   '--resume')
        runner.logger.warning(message)
        raise TrainingInterrupted(message, signum)

    @staticmethod
    def _save(runner, step: int):
        hooks = [h for h in runner.hooks if isinstance(h, CheckpointHook)]
        if not hooks:
            return None
        hook = hooks[0]
        path = osp.join(hook.out_dir, hook.filename_tmpl.format(step))
        if hook.last_ckpt != path:  # not saved by its interval already
            runner.logger.info(f'Saving checkpoint at {step} iterations')
            hook._save_checkpoint_with_step(
                runner, step, meta=dict(epoch=runner.epoch, iter=step))
        return path
