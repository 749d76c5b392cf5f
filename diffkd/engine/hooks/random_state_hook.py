"""The random generators of a run (python, numpy, torch, CUDA), end to end.

* **Checkpoints** hold them (``random_state``), every process's when there
  are several (``random_state_ranks``): the runner gathers them on all
  ranks before rank 0 writes (``before_save_checkpoint_all_ranks``, see
  :class:`~diffkd.engine.runner.DiffusionRunner`).
* **Resuming** continues them exactly, so N + resume + N iterations equal
  2N: mmengine's ``IterBasedTrainLoop`` fast-forwards the dataloader first,
  which draws random crops and flips again when the main process loads
  data; the saved states are restored after that fast-forward, right
  before the first new batch is drawn (at ``before_train_iter`` that batch
  would already have been drawn from the wrong state).
* **Several processes** draw different noise and timesteps: rank 0 keeps
  the stream a single process has (so one process is unchanged), every
  other rank reseeds with ``seed + rank`` before its first iteration
  (mmengine's ``diff_rank_seed`` convention; mmengine's own option is not
  used because it also reseeds the data sampler, which would change the
  single-process data order). A resumed run continues each rank's own
  stream; with another number of processes rank 0 continues and the others
  reseed (logged).
* **Validation** leaves them as they were: the val loop's data loading
  draws from them, and the training stream must not depend on when (or
  whether) validation runs.
"""
import logging
import random
from typing import Callable, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import set_random_seed

from diffkd.registry import HOOKS


def get_random_state() -> dict:
    return dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() else None)


def set_random_state(state: dict) -> None:
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


class _AfterFastForward:
    """Stands in for the train loop's dataloader iterator while mmengine
    fast-forwards ``skip`` batches; then runs ``action`` before the next
    batch is drawn and gives the loop its iterator back."""

    def __init__(self, loop, iterator, skip: int, action: Callable):
        self.loop, self.iterator = loop, iterator
        self.skip, self.action = skip, action

    def __iter__(self):
        return self

    def __next__(self):
        if self.skip > 0:
            self.skip -= 1
            return next(self.iterator)
        self.loop.dataloader_iterator = self.iterator
        self.action()
        return next(self.iterator)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Owns the random generators' states; see the module docstring."""
    priority = 'VERY_LOW'

    def __init__(self):
        self._ranks = None  # every rank's states, for the next checkpoint
        self._loaded: Optional[dict] = None  # this rank's, to restore
        self._resumed = False
        self._outside_val: Optional[dict] = None

    # --------------------------------------------------------- checkpoint
    def before_save_checkpoint_all_ranks(self, runner) -> None:
        """Called by the runner on every rank before a checkpoint is saved
        (a collective: the file is written by rank 0 alone)."""
        _, world = get_dist_info()
        self._ranks = (all_gather_object(get_random_state())
                       if world > 1 else None)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        ranks, self._ranks = self._ranks, None
        if ranks:
            checkpoint['random_state'] = ranks[0]
            checkpoint['random_state_ranks'] = ranks
        else:
            checkpoint['random_state'] = get_random_state()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        rank, world = get_dist_info()
        ranks = checkpoint.get('random_state_ranks')
        if ranks and len(ranks) == world:
            state = ranks[rank]
        elif rank == 0:
            state = checkpoint.get('random_state')
        else:
            # Saved by another number of processes: this rank starts a
            # fresh stream of its own (the run goes on, not bit-exactly).
            state = None
            print_log(
                f'the checkpoint holds the random states of '
                f'{len(ranks) if ranks else 1} process(es), this run has '
                f'{world}: rank {rank} reseeds', logger='current',
                level=logging.WARNING)
        self._loaded = state
        self._resumed = True

    # --------------------------------------------------- first iteration
    def before_train(self, runner) -> None:
        action = self._first_iteration(runner)
        if action is None:
            return
        loop = runner.train_loop
        iterator = getattr(loop, 'dataloader_iterator', None)
        if iterator is None:  # a loop that does not fast-forward
            action()
        else:
            loop.dataloader_iterator = _AfterFastForward(
                loop, iterator, runner.iter, action)

    def _first_iteration(self, runner) -> Optional[Callable]:
        state, self._loaded = self._loaded, None
        if state is not None:
            return lambda: set_random_state(state)
        rank, world = get_dist_info()
        if world == 1 or rank == 0:
            return None
        # Fresh run: seed + rank. Resumed without this rank's saved state:
        # also mix in the iteration, so the stream is new.
        seed = (hash((runner.seed, rank, runner.iter)) if self._resumed
                else runner.seed + rank)
        return lambda: set_random_seed(int(seed) % 2**32)

    # --------------------------------------------------------- validation
    def before_val(self, runner) -> None:
        self._outside_val = get_random_state()

    def after_val(self, runner) -> None:
        if self._outside_val is not None:
            set_random_state(self._outside_val)
            self._outside_val = None
