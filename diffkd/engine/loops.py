"""Loops of diffkd configs.

Training uses mmengine's ``IterBasedTrainLoop`` as it is (with its
validation): exact resume is :class:`~diffkd.engine.hooks.RandomStateHook`'s
concern and dataloader workers are shielded from a signal sent to the
process group by the runner that builds them
(:meth:`~diffkd.engine.runner.DiffusionRunner.build_dataloader`).
``DiffusionTrainLoop``, the name earlier configs gave to the train loop,
is registered as mmengine's ``IterBasedTrainLoop``.
"""
from typing import Optional

from mmengine.runner import IterBasedTrainLoop, TestLoop

from diffkd.registry import LOOPS

LOOPS.register_module(name='DiffusionTrainLoop', module=IterBasedTrainLoop)


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
