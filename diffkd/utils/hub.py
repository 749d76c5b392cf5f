"""Where pretrained names point: hub ids, local folders and the toy world.

A name is handed to diffusers/transformers ``from_pretrained`` unchanged,
except names under ``diffkd-toy/``, which resolve to folders in the diffkd
cache (``$DIFFKD_HOME``, default ``~/.cache/diffkd``) and are built there on
first use. Loading then goes through the very same ``from_pretrained`` path
as a real model.
"""
import os
import os.path as osp
import shutil
import tempfile
from contextlib import contextmanager
from typing import Callable, Dict

TOY_PREFIX = 'diffkd-toy/'
_DONE = '.complete'
_BUILDERS: Dict[str, Callable[[str], None]] = {}


def diffkd_home() -> str:
    return osp.expanduser(
        os.environ.get('DIFFKD_HOME', osp.join('~', '.cache', 'diffkd')))


def register_toy_asset(name: str):
    """Register ``builder(out_dir)`` that writes the asset ``name``."""

    def wrap(fn):
        _BUILDERS[name] = fn
        return fn

    return wrap


def toy_asset_names():
    from diffkd.toy import assets  # noqa: F401  (registers the builders)
    return sorted(_BUILDERS)


@contextmanager
def _lock(path: str):
    from filelock import FileLock
    os.makedirs(osp.dirname(path), exist_ok=True)
    with FileLock(path + '.lock'):
        yield


def resolve_model_path(name_or_path: str) -> str:
    """Map a ``diffkd-toy/<asset>`` name to its cached folder, building it
    once; any other name is returned as given (hub id or local path)."""
    if not isinstance(name_or_path, str) or not name_or_path.startswith(
            TOY_PREFIX):
        return name_or_path
    name = name_or_path[len(TOY_PREFIX):].strip('/')
    names = toy_asset_names()
    if name not in _BUILDERS:
        raise KeyError(f'unknown toy asset {name_or_path!r}; available: '
                       f'{[TOY_PREFIX + n for n in names]}')
    path = osp.join(diffkd_home(), 'toy', name)
    if osp.exists(osp.join(path, _DONE)):
        return path
    with _lock(path):
        if osp.exists(osp.join(path, _DONE)):  # built by another process
            return path
        # Build into a temporary sibling and rename: a crash mid-build never
        # leaves a folder that looks complete.
        tmp = tempfile.mkdtemp(prefix=f'.{name}-', dir=osp.dirname(path))
        try:
            _BUILDERS[name](tmp)
            open(osp.join(tmp, _DONE), 'w').close()
            if osp.exists(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
    return path
