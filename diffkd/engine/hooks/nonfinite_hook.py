"""NaN/inf losses: reported, and the run stopped when they should stop it.

:class:`~diffkd.engine.optim.DiffusionOptimWrapper` keeps a non-finite step
out of the weights and says so in its public attributes (``nonfinite``:
``'stop'``, ``'skip'`` or ``'off'``; per iteration ``nonfinite_local``,
``nonfinite_any``, ``nonfinite_synced``). This hook reads them and the
iteration's loss terms, and at each check either ends the run with
:class:`~diffkd.engine.errors.NonFiniteLossError`, e.g. ``non-finite loss
at iteration 7: loss_kd_feat = nan`` (``'stop'``), or logs each skipped
step and the running count (``'skip'``; ``max_skipped`` bounds it).

Flags are read when the host syncs anyway: every ``check_interval``
iterations (default: the logger's interval, at most 50), at the end and at
once when the step needed a sync; the weights never saw the bad step in
between, so checkpoints written in between are sound.
"""
import math
from typing import Dict, List, Optional

import torch
from mmengine.hooks import Hook, LoggerHook

from diffkd.registry import HOOKS
from ..errors import NonFiniteLossError
from ..optim import DiffusionOptimWrapper


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Report NaN/inf losses and stop the run; see the module docstring.

    Args:
        check_interval: iterations between reads of the flags on the host
            (None: the logger's interval, at most 50).

    What a non-finite loss does is the optimizer wrapper's
    ``optim_wrapper.nonfinite``. With another wrapper (DeepSpeed's) the
    loss is checked here, reported and the run stopped: such a step cannot
    be skipped.
    """
    priority = 'ABOVE_NORMAL'  # before EMA, exports and checkpoints

    def __init__(self, check_interval: Optional[int] = None,
                 mode: Optional[str] = None):
        if mode is not None:
            raise ValueError(
                f'NonFiniteLossHook no longer takes mode={mode!r}: what a '
                'non-finite loss does belongs to the optimizer wrapper; set '
                f"optim_wrapper.nonfinite={mode!r} (DiffusionOptimWrapper) "
                'and remove default_hooks.nonfinite.mode')
        self.check_interval = check_interval
        self.mode = 'stop'
        self.max_skipped: Optional[int] = None
        self.skipped = 0
        self.wrapper: Optional[DiffusionOptimWrapper] = None
        self._pending: List = []
        self._error: Optional[str] = None

    def before_train(self, runner) -> None:
        wrapper = runner.optim_wrapper
        if isinstance(wrapper, DiffusionOptimWrapper):
            self.wrapper = wrapper
            self.mode = wrapper.nonfinite
            self.max_skipped = wrapper.max_skipped
        else:
            runner.logger.warning(
                f'NonFiniteLossHook: {type(wrapper).__name__} is not a '
                'DiffusionOptimWrapper; a non-finite loss is reported and '
                'stops the run, its step cannot be skipped')
        if self.check_interval is None:
            intervals = [h.interval for h in runner.hooks
                         if isinstance(h, LoggerHook)]
            self.check_interval = max(1, min([50] + intervals))

    def after_train(self, runner) -> None:
        if self.mode == 'off':
            return
        self._check(runner)
        self._raise_if_stopped()
        if self.skipped:
            runner.logger.warning(f'{self.skipped} optimizer step(s) were '
                                  'skipped for a non-finite loss')

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.mode == 'off':
            return
        wrapper = self.wrapper
        if wrapper is not None:
            local, anywhere = wrapper.nonfinite_local, wrapper.nonfinite_any
            synced = wrapper.nonfinite_synced
        else:
            loss = (outputs or {}).get('loss')
            local = anywhere = None if loss is None else \
                ~torch.isfinite(loss.detach()).all()
            synced = False
        if local is not None:
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
            if self.wrapper is None:  # e.g. DeepSpeed: reported only
                message += ' (this optimizer wrapper cannot skip the step)'
            if self.mode == 'stop':
                if self._error is None:
                    self._error = message + (
                        '. That optimizer step was not applied; the last '
                        'checkpoint holds finite weights. Set '
                        "optim_wrapper.nonfinite='skip' to skip such steps "
                        'and go on.' if self.wrapper is not None else '')
                continue
            self.skipped += 1
            what = 'optimizer step skipped'
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
