"""Config set-up shared by the train and test entry points."""
import importlib.util
import os.path as osp
import sys
from typing import Optional

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
