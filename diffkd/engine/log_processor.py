"""What a training log line shows.

A distillation step logs the loss, its three terms and one unweighted term
per feature pair (``kd_feat/<module>``: 26 on the toy SSD-1B). The console
line keeps the loss and its terms; the per-pair values go to the scalar
backends only (``vis_data/scalars.json``, TensorBoard).
"""
import re
from typing import Optional, Sequence

from mmengine.runner import LogProcessor

from diffkd.registry import LOG_PROCESSORS


@LOG_PROCESSORS.register_module()
class DiffusionLogProcessor(LogProcessor):
    """mmengine's LogProcessor, with scalars left out of the console line.

    Args:
        console_exclude: regular expressions; a scalar whose name (without
            the ``train/`` prefix) matches one from its start is written to
            the visualizer backends but not to the console line.
        **kwargs: :class:`mmengine.runner.LogProcessor`'s arguments.
    """

    def __init__(self, console_exclude: Sequence[str] = (r'kd_feat/', ),
                 **kwargs):
        super().__init__(**kwargs)
        self.console_exclude = [re.compile(p) for p in console_exclude]
        self._hidden: Optional[dict] = None

    def get_log_after_iter(self, runner, batch_idx: int, mode: str):
        self._hidden = {}
        try:
            tag, log_str = super().get_log_after_iter(runner, batch_idx,
                                                      mode)
        finally:
            hidden, self._hidden = self._hidden, None
        if not self.log_with_hierarchy:
            # The backends' tag was copied from the console's scalars.
            tag.update(hidden)
        return tag, log_str

    # LogProcessor builds the console line from this method's result (and,
    # without log_with_hierarchy, the backends' tag from a copy of it).
    def _collect_scalars(self, custom_cfg, runner, mode: str,
                         reserve_prefix: bool = False) -> dict:
        scalars = super()._collect_scalars(custom_cfg, runner, mode,
                                           reserve_prefix)
        if self._hidden is None or reserve_prefix:
            return scalars
        shown = type(scalars)()
        for name, value in scalars.items():
            if any(p.match(name) for p in self.console_exclude):
                self._hidden[name] = value
            else:
                shown[name] = value
        return shown
