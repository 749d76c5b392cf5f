"""Several teachers in succession (e.g. SSD-1B: SDXL, then fine-tuned SDXL
experts)."""
from typing import List, Tuple

from mmengine.hooks import Hook

from diffkd.registry import HOOKS
from .export_hook import unwrap


@HOOKS.register_module()
class TeacherScheduleHook(Hook):
    """Switch the distiller's teacher at given iterations.

    ``schedule=[(10000, 'path/or/hub-id'), (20000, 'another')]``: from
    iteration 10000 on the first, from 20000 on the second. Resuming picks
    the teacher that was active at the resumed iteration.
    """
    priority = 'HIGH'

    def __init__(self, schedule: List[Tuple[int, str]],
                 subfolder: str = 'unet'):
        self.schedule = sorted((int(i), m) for i, m in schedule)
        self.subfolder = subfolder
        self._active = None

    def _wanted(self, it: int):
        wanted = None
        for start, model in self.schedule:
            if it >= start:
                wanted = model
        return wanted

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        wanted = self._wanted(runner.iter)
        if wanted is not None and wanted != self._active:
            unwrap(runner.model).switch_teacher(wanted, self.subfolder)
            self._active = wanted
