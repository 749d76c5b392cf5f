"""Stop on SIGTERM/SIGINT with a resumable checkpoint.

Schedulers (SLURM preemption, ``scancel``, Kubernetes) send SIGTERM and
kill a little later; Ctrl-C sends SIGINT. Either way the running iteration
is finished, a checkpoint is written through the run's CheckpointHook (same
file names, ``last_checkpoint`` updated, so ``--resume`` finds it) and the
run stops with :class:`~diffkd.engine.errors.TrainingInterrupted`, which
``tools/train.py`` turns into exit status 143 (SIGTERM) or 130 (SIGINT).
A second signal has its usual effect at once.

Schedulers often signal every process of the job (``scancel``, ``kill
-TERM -PGID``, systemd), dataloader workers included, and torch's workers
die of a SIGTERM that does not come from their main process, which fails
the run before its checkpoint. :meth:`SignalCheckpointHook.shield_workers`
(called by ``DiffusionRunner.build_dataloader`` for every dataloader it
builds, before the workers start) makes workers outlive the first such
signal; they still exit with the main process.
"""
import logging
import os
import os.path as osp
import signal
import threading
from functools import partial
from typing import Sequence, Union

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from torch.utils.data import DataLoader

from diffkd.registry import HOOKS
from ..errors import TrainingInterrupted


def _worker_init(worker_id: int, signals=(), init_fn=None) -> None:
    """``worker_init_fn`` of a shielded dataloader: its own set-up, then the
    one it had (mmengine's seeding or the config's ``worker_init_fn``)."""
    # Signals the worker ignores already (SIG_IGN) need nothing.
    signals = {s for s in signals if signal.getsignal(s) is not signal.SIG_IGN}
    if signals and hasattr(signal, 'sigwaitinfo'):  # not on macOS/Windows
        # Blocked, these signals are taken by the thread alone, which can
        # tell who sent them. Processes started from this worker inherit
        # the mask: SIGTERM does not reach them, SIGKILL does.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        threading.Thread(
            target=_absorb_first_signal, args=(signals, os.getppid()),
            name='diffkd-worker-signals', daemon=True).start()
    if init_fn is not None:
        init_fn(worker_id)


def _absorb_first_signal(signals, parent: int) -> None:
    absorbed = False
    while True:
        info = signal.sigwaitinfo(signals)
        # Exit as torch's workers do (status 0, which the main process does
        # not report as a failure) when the main process sends it (its
        # shutdown terminates workers), when it is gone, or on a second
        # signal (which stops the main process at once too). The first one
        # from elsewhere is the scheduler's: the main process got it as well
        # and ends its workers after its checkpoint.
        if info.si_pid == parent or os.getppid() != parent or absorbed:
            os._exit(0)
        absorbed = True


def _is_shielded(dataloader) -> bool:
    fn = getattr(dataloader, 'worker_init_fn', None)
    return isinstance(fn, partial) and fn.func is _worker_init


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

    def shield_workers(self, dataloader) -> None:
        """Let the workers of ``dataloader`` outlive the first of the
        handled signals sent to them by anyone but the main process, so
        that the main process can finish its iteration and checkpoint.
        The main process still ends them (at its exit it sends them
        SIGTERM, which they obey at once, as torch's workers do), and a
        second signal ends them at once. Call it before the workers start:
        the loader's ``worker_init_fn`` is wrapped."""
        if (not self.signals or not isinstance(dataloader, DataLoader)
                or dataloader.num_workers == 0 or _is_shielded(dataloader)):
            return
        dataloader.worker_init_fn = partial(
            _worker_init, signals=tuple(self.signals),
            init_fn=dataloader.worker_init_fn)

    # ------------------------------------------------------------ handlers
    def before_train(self, runner) -> None:
        if not self.signals:
            return
        if threading.current_thread() is not threading.main_thread():
            runner.logger.warning('training is not in the main thread: '
                                  'SIGTERM/SIGINT are not handled')
            return
        loader = getattr(runner.train_loop, 'dataloader', None)
        if (isinstance(loader, DataLoader) and loader.num_workers > 0
                and not _is_shielded(loader)):
            runner.logger.warning(
                f'the train dataloader\'s {loader.num_workers} workers were '
                f'built by {type(runner).__name__}, which does not shield '
                'them: a signal sent to the whole process group (scancel, '
                'kill -TERM -PGID) ends them and the run fails without a '
                "checkpoint; use runner_type='DiffusionRunner' (or "
                "'DiffusionFlexibleRunner')")
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
