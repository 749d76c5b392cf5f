"""Training loop whose resume is exact.

mmengine's IterBasedTrainLoop fast-forwards the dataloader on resume, which
draws random crops and flips again and so moves the random generators away
from where the interrupted run left them. This loop restores the generator
states saved in the checkpoint (by :class:`RandomStateHook`) after that
fast-forward, so N + resume + N iterations equal 2N straight.
"""
import logging
import random
from typing import Optional

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.runner import IterBasedTrainLoop, TestLoop

from diffkd.registry import HOOKS, LOOPS


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


@HOOKS.register_module()
class RandomStateHook(Hook):
    """Save the random generators' states in every checkpoint."""
    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint):
        checkpoint['random_state'] = get_random_state()

    def after_load_checkpoint(self, runner, checkpoint):
        runner.diffkd_pending_random_state = checkpoint.get('random_state')


@LOOPS.register_module()
class DiffusionTrainLoop(IterBasedTrainLoop):

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
