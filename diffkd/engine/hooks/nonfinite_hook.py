"""NaN/inf losses: never applied to the weights; stop or skip.

The summed loss of every step is tested with ``torch.isfinite`` on the
device. A non-finite step is not applied: with an optimizer that takes
``found_inf`` (fused Adam/AdamW/SGD, as in the toy and SDXL schedules) the
skip happens on the device, with no host sync; with any other optimizer (or
with a GradScaler) the flag is read on the host before the step, one sync
per step. Across processes the flag is all-reduced, so every rank skips the
same steps.

``mode='stop'`` (default) then ends the run with
:class:`~diffkd.engine.errors.NonFiniteLossError`, e.g. ``non-finite loss at
iteration 7: loss_kd_feat = nan``; ``mode='skip'`` logs each skipped step
and the running count and goes on (``max_skipped`` bounds it). Flags are
read when the host syncs anyway: every ``check_interval`` iterations
(default: the logger's interval, at most 50), at the end and at once when
the step needed a sync; the weights never saw the bad step in between, so
checkpoints written in between are sound.
"""
import math
from typing import Dict, List, Optional

import torch
import torch.distributed as torch_dist
from mmengine.dist import get_dist_info
from mmengine.hooks import Hook, LoggerHook
from mmengine.optim import OptimWrapper

from diffkd.registry import HOOKS
from ..errors import NonFiniteLossError

MODES = ('stop', 'skip', 'off')


class StepGuard:
    """Wraps one OptimWrapper's ``update_params`` and ``step`` so that a
    non-finite loss never reaches the optimizer."""

    def __init__(self, wrapper: OptimWrapper):
        self.wrapper = wrapper
        optimizer = wrapper.optimizer
        # GradScaler sets found_inf itself; leave AMP to the sync path.
        self.on_device = bool(
            getattr(optimizer, '_step_supports_amp_scaling', False)
            and getattr(wrapper, 'loss_scaler', None) is None)
        self._update_params = wrapper.update_params
        self._step = wrapper.step

        def step(**kwargs):
            return self.step(**kwargs)

        # mmengine's parameter schedulers mark the step they count.
        step._with_counter = getattr(self._step, '_with_counter', False)
        wrapper.update_params = self.update_params
        wrapper.step = step
        self.pending = None  # flag accumulated since the last step
        self.records: List = []  # (local, any-rank) flags per update
        self.synced = False  # a flag was read on the host this iteration

    def remove(self) -> None:
        self.wrapper.update_params = self._update_params
        self.wrapper.step = self._step

    def update_params(self, loss, step_kwargs=None, zero_kwargs=None):
        local = ~torch.isfinite(loss.detach()).all()
        flag = local.float().reshape(1)
        if get_dist_info()[1] > 1:
            torch_dist.all_reduce(flag, op=torch_dist.ReduceOp.MAX)
        self.records.append((local, flag))
        self.pending = flag if self.pending is None else torch.maximum(
            self.pending, flag)
        return self._update_params(loss, step_kwargs, zero_kwargs)

    def step(self, **kwargs):
        flag, self.pending = self.pending, None
        if flag is None:
            return self._step(**kwargs)
        if self.on_device:
            optimizer = self.wrapper.optimizer
            optimizer.found_inf = flag.reshape(())
            try:
                return self._step(**kwargs)
            finally:
                optimizer.found_inf = None
        self.synced = True
        if flag.item():
            return None  # update_params goes on to zero the gradients
        return self._step(**kwargs)


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Keep NaN/inf losses out of the weights; see the module docstring.

    Args:
        mode: ``'stop'``, ``'skip'`` or ``'off'`` (no check at all).
        check_interval: iterations between reads of the flags on the host
            (None: the logger's interval, at most 50).
        max_skipped: with ``mode='skip'``, stop once more steps than this
            have been skipped (None: no limit).
    """
    priority = 'ABOVE_NORMAL'  # before EMA, exports and checkpoints

    def __init__(self, mode: str = 'stop',
                 check_interval: Optional[int] = None,
                 max_skipped: Optional[int] = None):
        if mode not in MODES:
            raise ValueError(f'NonFiniteLossHook mode must be one of '
                             f'{MODES}, got {mode!r}')
        self.mode = mode
        self.check_interval = check_interval
        self.max_skipped = max_skipped
        self.skipped = 0
        self.guard: Optional[StepGuard] = None
        self._pending: List = []
        self._error: Optional[str] = None

    def before_train(self, runner) -> None:
        if self.mode == 'off':
            return
        wrapper = runner.optim_wrapper
        if isinstance(wrapper, OptimWrapper):
            self.guard = StepGuard(wrapper)
        else:
            runner.logger.warning(
                f'NonFiniteLossHook: {type(wrapper).__name__} is not an '
                'OptimWrapper; non-finite losses are reported, not skipped')
        if self.check_interval is None:
            intervals = [h.interval for h in runner.hooks
                         if isinstance(h, LoggerHook)]
            self.check_interval = max(1, min([50] + intervals))

    def after_train(self, runner) -> None:
        if self.mode == 'off':
            return
        self._check(runner)
        self._raise_if_stopped()
        if self.guard is not None:
            self.guard.remove()
            self.guard = None
        if self.skipped:
            runner.logger.warning(f'{self.skipped} optimizer step(s) were '
                                  'skipped for a non-finite loss')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.mode == 'off':
            return
        if self.guard is not None:
            records, self.guard.records = self.guard.records, []
            synced, self.guard.synced = self.guard.synced, False
        else:
            loss = (outputs or {}).get('loss')
            records = [] if loss is None else [
                (~torch.isfinite(loss.detach()),) * 2]
            synced = False
        if records:
            local = torch.stack([r[0].reshape(()) for r in records]).any()
            anywhere = torch.stack(
                [r[1].reshape(()).float() for r in records]).max()
            terms = {k: v.detach() for k, v in (outputs or {}).items()
                     if torch.is_tensor(v) and v.numel() == 1}
            self._pending.append((runner.iter + 1, local, anywhere, terms))
        if synced or (runner.iter + 1) % self.check_interval == 0 \
                or runner.iter + 1 >= runner.max_iters:
            self._check(runner)
            self._raise_if_stopped()

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        # Rank 0 only: count what is pending (the error, if any, is raised
        # at the next regular check, where every rank raises it).
        if self.mode != 'off':
            self._check(runner)
        checkpoint['nonfinite_skipped'] = self.skipped

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self.skipped = int(checkpoint.get('nonfinite_skipped', 0))

    # ------------------------------------------------------------------
    def _check(self, runner) -> None:
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        flags = torch.stack([torch.stack([local.float(), anywhere.float()])
                             for _, local, anywhere, _ in pending]).tolist()
        for (it, _, _, terms), (local, anywhere) in zip(pending, flags):
            if not anywhere:
                continue
            where = (self._describe(terms) if local else
                     'on another process')
            message = f'non-finite loss at iteration {it}: {where}'
            if self.guard is None:  # e.g. DeepSpeed: reported only
                message += ' (this optimizer wrapper cannot skip the step)'
            if self.mode == 'stop':
                if self._error is None:
                    self._error = message + (
                        '. That optimizer step was not applied; the last '
                        'checkpoint holds finite weights. Set '
                        "default_hooks.nonfinite.mode='skip' to skip such "
                        'steps and go on.' if self.guard is not None else '')
                continue
            self.skipped += 1
            what = ('optimizer step skipped' if self.guard is not None else
                    'counted')
            runner.logger.warning(f'{message}; {what} ({self.skipped} so '
                                  'far)')
            runner.message_hub.update_info('nonfinite_skipped', self.skipped)
            if self.max_skipped is not None and \
                    self.skipped > self.max_skipped and self._error is None:
                self._error = (f'{message}: more than {self.max_skipped} '
                               'optimizer steps skipped for a non-finite '
                               'loss')

    def _raise_if_stopped(self) -> None:
        if self._error is not None:
            raise NonFiniteLossError(self._error)

    @staticmethod
    def _describe(terms: Dict[str, torch.Tensor]) -> str:
        values = dict(zip(terms, torch.stack(
            [v.float().reshape(()) for v in terms.values()]).tolist())) \
            if terms else {}
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        # The loss terms (the total they add up to only when alone), then
        # how many other logged values (e.g. per-pair feature losses).
        terms = [k for k in bad if k.startswith('loss') and k != 'loss'] \
            or [k for k in bad if k == 'loss']
        others = [k for k in bad if not k.startswith('loss')]
        if not terms and not others:
            return 'loss = non-finite'
        shown = ', '.join(f'{k} = {values[k]}' for k in terms[:5])
        if len(terms) > 5:
            shown += f' and {len(terms) - 5} more'
        if others:
            shown += (f'{" (" if shown else "("}{len(others)} other logged '
                      f'value(s) non-finite, first {others[0]} = '
                      f'{values[others[0]]})')
        return shown
