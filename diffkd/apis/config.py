"""Config set-up shared by the train and test entry points."""
import importlib.util
import os.path as osp
import sys
from typing import Any, Optional, Tuple

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
