"""Config set-up shared by the train and test entry points."""
import importlib.util
import os.path as osp
import sys
from typing import Any, Optional, Tuple, Union

import torch
from mmengine.config import Config


def load_run_config(path: str,
                    work_dir: Optional[str] = None,
                    cfg_options: Optional[dict] = None,
                    launcher: str = 'none') -> Config:
    """Read a config and apply what every run needs: command-line
    overrides, the work dir (default ``./work_dirs/<config name>``), the
    gloo backend when there is no CUDA, and TensorBoard logging when it is
    installed."""
    if not osp.isfile(path):
        sys.exit(f'error: config file {path} does not exist')
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    if cfg_options is not None:
        check_option_types(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(path))[0])
    if not torch.cuda.is_available():
        cfg.setdefault('env_cfg', {}).setdefault('dist_cfg', {})
        cfg.env_cfg.dist_cfg.backend = 'gloo'
    if importlib.util.find_spec('tensorboard') is not None:
        backends = cfg.visualizer.setdefault('vis_backends', [])
        if not any(b.get('type') == 'TensorboardVisBackend'
                   for b in backends):
            backends.append(dict(type='TensorboardVisBackend'))
    return cfg


# optimizer wrappers whose precision --amp sets (diffkd/engine/optim.py)
AMP_WRAPPERS = ('DiffusionOptimWrapper', 'AutocastOptimWrapper')


def train_config(config: str,
                 work_dir: Optional[str] = None,
                 cfg_options: Optional[dict] = None,
                 launcher: str = 'none',
                 amp: bool = False,
                 resume: Union[None, bool, str] = None) -> Config:
    """The config ``tools/train.py`` trains: :func:`load_run_config`, then
    ``amp`` as ``optim_wrapper.dtype='auto'`` (a config that sets a dtype
    keeps it) and ``resume`` (``'auto'`` or True: the work dir's latest
    checkpoint; a path: that checkpoint) as ``resume``/``load_from``."""
    cfg = load_run_config(config, work_dir, cfg_options, launcher)
    if amp and cfg.optim_wrapper.get('dtype') is None:
        wrapper = cfg.optim_wrapper.get('type')
        if wrapper not in AMP_WRAPPERS:
            sys.exit(f'error: --amp sets optim_wrapper.dtype of a '
                     f'DiffusionOptimWrapper; {config} uses {wrapper}, '
                     'whose precision is set in the config itself')
        cfg.optim_wrapper.dtype = 'auto'
    if resume is True or resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif resume:
        cfg.resume = True
        cfg.load_from = resume
    return cfg


def resolve_checkpoint(path: str) -> str:
    """A .pth file as is; a work dir -> the checkpoint it last wrote."""
    if osp.isdir(path):
        marker = osp.join(path, 'last_checkpoint')
        if not osp.isfile(marker):
            sys.exit(f'error: {path} holds no last_checkpoint (is it the '
                     'work dir of a run that saved a checkpoint?)')
        with open(marker) as f:
            return f.read().strip()
    if not osp.isfile(path):
        sys.exit(f'error: checkpoint {path} does not exist')
    return path


def evaluation_config(config: str,
                checkpoint: Optional[str] = None,
                work_dir: Optional[str] = None,
                cfg_options: Optional[dict] = None,
                launcher: str = 'none',
                save_images: bool = True) -> Config:
    """The config ``tools/test.py`` evaluates: :func:`load_run_config`, the
    weights of ``checkpoint`` (a .pth file or a work dir; None: the
    config's own) and a ``TestOutputsHook`` unless the config has one."""
    cfg = load_run_config(config, work_dir, cfg_options, launcher)
    for key in ('test_dataloader', 'test_evaluator', 'test_cfg'):
        if cfg.get(key) is None:
            sys.exit(f'error: {config} has no {key}; inherit '
                     "'configs/_base_/evaluation/...' or define it")
    cfg.load_from = resolve_checkpoint(checkpoint) if checkpoint else None
    cfg.resume = False
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') == 'TestOutputsHook' for h in hooks):
        hooks.append(dict(type='TestOutputsHook', save_images=save_images))
    cfg.custom_hooks = hooks
    return cfg


def check_option_types(cfg: Config, options: dict) -> None:
    """Exit with a message naming the option when a ``--cfg-options`` value
    cannot stand in for the config value it replaces: a bool takes
    true/false, a number (int or float: configs write ``1`` for ``1.0``)
    takes a number, a string takes anything but a list (``--cfg-options``
    parses ``512`` as a number, and options such as ``loss_scale`` take
    both). None, on either side, goes with anything; keys the config does
    not have yet are not judged.
    """
    for key, value in options.items():
        found, old = _lookup(cfg, key)
        if not found or old is None or value is None:
            continue
        expected = _expected(old, value)
        if expected is not None:
            sys.exit(f'error: --cfg-options {key}={_shown(value)}: expected '
                     f"{expected} (the config's value is {old!r})")


def _lookup(cfg, key: str) -> Tuple[bool, Any]:
    """(whether the config has ``a.b.0.c``, its value)."""
    node = cfg
    for part in key.split('.'):
        if isinstance(node, (list, tuple)) and part.isdigit() and \
                int(part) < len(node):
            node = node[int(part)]
        elif hasattr(node, 'keys') and part in node.keys():
            node = node[part]
        else:
            return False, None
    return True, node


def _expected(old, value) -> Optional[str]:
    """What ``value`` should have been to replace ``old``; None if fine."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(old, bool):
        return None if isinstance(value, bool) else 'true or false'
    if isinstance(old, int):
        return None if number else 'an integer'
    if isinstance(old, float):
        return None if number else 'a number'
    if isinstance(old, str) and isinstance(value, (list, tuple, dict)):
        return 'a single value'
    return None


def _shown(value) -> str:
    """The option's value as typed (DictAction has parsed it)."""
    if isinstance(value, (list, tuple)):
        return ','.join(_shown(v) for v in value)
    return str(value)
