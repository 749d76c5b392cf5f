"""Build the runner a config selects and train it, as ``tools/train.py``
does."""
import contextlib

from mmengine.config import Config
from mmengine.runner import Runner

from diffkd.engine.distributed import init_distributed
from diffkd.engine.errors import RunStopped
from diffkd.engine.hooks import SignalCheckpointHook
from diffkd.registry import RUNNERS


def build_runner(cfg: Config) -> Runner:
    """The config's ``runner_type`` (``DiffusionRunner``,
    ``DiffusionFlexibleRunner``), else mmengine's Runner; a distributed
    launcher's process group is set up first."""
    if cfg.get('launcher', 'none') != 'none':
        # Before the runner: mmengine's own set-up needs CUDA.
        init_distributed(cfg.launcher,
                         **cfg.get('env_cfg', {}).get('dist_cfg', {}))
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def run_training(runner: Runner):
    """``runner.train()``; a deliberate stop (signal, NaN loss, full disk)
    still closes the visualizer, and SIGTERM/SIGINT get their previous
    handlers back however training ended."""
    try:
        return runner.train()
    except RunStopped:
        # TensorBoard and local logs are complete after a stop too.
        with contextlib.suppress(Exception):
            runner.call_hook('after_run')
        raise
    finally:
        for hook in runner.hooks:
            if isinstance(hook, SignalCheckpointHook):
                hook.restore()
