"""Training scalars reach the message hub without a host sync every step.

mmengine's RuntimeInfoHook converts every logged tensor with ``.item()``
after every iteration: one device-to-host sync per loss term and per
feature pair, each step. This hook keeps the iteration's tensors (detached,
on the device) and converts them all with a single transfer when a logger,
a checkpoint or the end of training needs them (the gradient norm too,
which :class:`~diffkd.engine.optim.DiffusionOptimWrapper` leaves on the
device). The message hub ends up
with exactly the history mmengine's hook would have written.
"""
from typing import Dict, List, Optional

import torch
from mmengine.hooks import LoggerHook, RuntimeInfoHook

from diffkd.registry import HOOKS


@HOOKS.register_module()
class DeferredRuntimeInfoHook(RuntimeInfoHook):
    """RuntimeInfoHook whose train scalars are synced once per log interval.

    Args:
        max_pending: flush at least every this many iterations, whatever the
            logger's interval (bounds the tensors held).
    """

    def __init__(self, max_pending: int = 50):
        super().__init__()
        self.max_pending = max_pending
        self._pending: List[Dict[str, torch.Tensor]] = []
        self._interval = 1

    def before_train(self, runner) -> None:
        super().before_train(runner)
        intervals = [h.interval for h in runner.hooks
                     if isinstance(h, LoggerHook)]
        self._interval = max(1, min([self.max_pending] + intervals))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs: Optional[dict] = None) -> None:
        step = {}
        # DiffusionOptimWrapper's, of this iteration's step (None if none)
        norm = getattr(getattr(runner, 'optim_wrapper', None), 'grad_norm',
                       None)
        if torch.is_tensor(norm):
            step['grad_norm'] = norm.detach()
        for k, v in (outputs or {}).items():
            step[k] = v.detach() if torch.is_tensor(v) else v
        if step:
            self._pending.append(step)
        if (runner.iter + 1 >= runner.max_iters
                or (runner.iter + 1) % self._interval == 0
                or self._logger_ends_epoch(runner, batch_idx)):
            self.flush(runner)

    @staticmethod
    def _logger_ends_epoch(runner, batch_idx: int) -> bool:
        # LoggerHook also logs at the dataloader's end of epoch.
        try:
            return batch_idx + 1 == len(runner.train_dataloader)
        except TypeError:
            return False

    def flush(self, runner) -> None:
        """Write the pending scalars to the message hub (one host sync)."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        tensors = [v.float().reshape(()) for step in pending
                   for v in step.values() if torch.is_tensor(v)]
        values = iter(torch.stack(tensors).tolist() if tensors else [])
        for step in pending:
            for key, value in step.items():
                if torch.is_tensor(value):
                    value = next(values)
                runner.message_hub.update_scalar(f'train/{key}', value)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # The checkpoint's copy of the hub was taken before this hook ran.
        if self._pending:
            self.flush(runner)
            checkpoint['message_hub'] = runner.message_hub.state_dict()

    def after_train(self, runner) -> None:
        self.flush(runner)
