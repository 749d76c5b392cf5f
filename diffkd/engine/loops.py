"""Training loop whose resume is exact.

mmengine's IterBasedTrainLoop fast-forwards the dataloader on resume, which
draws random crops and flips again and so moves the random generators away
from where the interrupted run left them. This loop restores the generator
states saved in the checkpoint (by :class:`RandomStateHook`) after that
fast-forward, so N + resume + N iterations equal 2N straight.

Distributed runs draw different noise and timesteps on every rank: rank 0
keeps the stream a single-process run has (so one process is unchanged),
every other rank reseeds with ``seed + rank`` before the first iteration
(mmengine's ``diff_rank_seed`` convention; mmengine's own option is not
used because it also reseeds the data sampler, which would change the
single-process data order). Checkpoints hold every rank's generator states,
so a resumed distributed run continues each rank's own stream.

Its dataloader's workers are shielded by ``SignalCheckpointHook`` before
they start, so a signal sent to the whole process group does not end them
before the checkpoint.
"""
import logging
import random
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import (BaseLoop, IterBasedTrainLoop, TestLoop,
                             set_random_seed)

from diffkd.registry import HOOKS, LOOPS
from .hooks.signal_hook import SignalCheckpointHook


def get_random_state():
    return dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state(),
        cuda=torch.cuda.get_rng_state_all()
        if torch.cuda.is_available() else None)


def set_random_state(state):
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'])
    if state.get('cuda') is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def collect_rank_random_states(runner) -> None:
    """Gather every rank's generator states for the next checkpoint (a
    collective: call it on all ranks; the checkpoint is written by rank 0
    alone)."""
    _, world = get_dist_info()
    runner.diffkd_rank_random_states = (
        all_gather_object(get_random_state()) if world > 1 else None)


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generators' states in every checkpoint (every
    rank's when distributed, see :func:`collect_rank_random_states`)."""
    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint):
        ranks = getattr(runner, 'diffkd_rank_random_states', None)
        runner.diffkd_rank_random_states = None
        if ranks:
            checkpoint['random_state'] = ranks[0]
            checkpoint['random_state_ranks'] = ranks
        else:
            checkpoint['random_state'] = get_random_state()

    def after_load_checkpoint(self, runner, checkpoint):
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
        runner.diffkd_pending_random_state = state
        runner.diffkd_resumed_random_state = True


@LOOPS.register_module()
class DiffusionTrainLoop(IterBasedTrainLoop):

    def __init__(self, runner, dataloader, *args, **kwargs):
        # IterBasedTrainLoop starts the workers as it is built: build the
        # loader first (BaseLoop's way: mmengine's worker seeding), so that
        # they start shielded.
        BaseLoop.__init__(self, runner, dataloader)
        for hook in runner.hooks:
            if isinstance(hook, SignalCheckpointHook):
                hook.shield_workers(self.dataloader)
        super().__init__(runner, self.dataloader, *args, **kwargs)

    def run(self):
        self.runner.call_hook('before_train')
        self.runner.call_hook('before_train_epoch')
        if self._iter > 0:
            print_log(
                f'Advance dataloader {self._iter} steps to skip data '
                'that has already been trained',
                logger='current',
                level=logging.WARNING)
            for _ in range(self._iter):
                next(self.dataloader_iterator)
        state = getattr(self.runner, 'diffkd_pending_random_state', None)
        if state is not None:
            set_random_state(state)
            self.runner.diffkd_pending_random_state = None
        else:
            rank, world = get_dist_info()
            if world > 1 and rank > 0:
                resumed = getattr(self.runner, 'diffkd_resumed_random_state',
                                  False)
                # Fresh run: seed + rank. Resumed without this rank's saved
                # state: also mix in the iteration, so the stream is new.
                if resumed:
                    set_random_seed(
                        hash((self.runner.seed, rank, self._iter)) % 2**32)
                else:
                    set_random_seed(self.runner.seed, diff_rank_seed=True)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = next(self.dataloader_iterator)
            self.run_iter(data_batch)
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model


@LOOPS.register_module()
class DiffusionTestLoop(TestLoop):
    """mmengine's TestLoop over a prompt set: every batch is sampled with
    the same settings, and with ``teacher=True`` a distiller's teacher
    samples the same prompts and seeds for the agreement metrics.

    Args:
        sampling: ``num_inference_steps``, ``guidance_scale``, ``height``,
            ``width``, ``negative_prompt`` for the pipeline.
        teacher: also sample the teacher (DiffusionDistiller only).
    """

    def __init__(self, runner, dataloader, evaluator, fp16: bool = False,
                 sampling: Optional[dict] = None, teacher: bool = False):
        super().__init__(runner, dataloader, evaluator, fp16)
        self.sampling = dict(sampling or {}, teacher=teacher)

    def run_iter(self, idx, data_batch) -> None:
        data_batch = dict(data_batch)
        data_batch['inputs'] = dict(data_batch['inputs'],
                                    sampling=self.sampling)
        super().run_iter(idx, data_batch)
