"""Resume without unpickling code.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10's
loader then fails on its own checkpoints (they hold a HistoryBuffer and
numpy arrays). Rather than switching ``weights_only`` off, which would
execute whatever a pickle carries, diffkd keeps the safe loader and allows
exactly the types mmengine training state is made of.

The helpers at the end write files so that a crash leaves the old content
or the new one, never a part (see :class:`~diffkd.engine.hooks.
SafeCheckpointHook`).
"""
import os
import os.path as osp
import pickle
import shutil

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader


def _numpy_globals():
    core = getattr(np, '_core', None) or np.core
    names = [core.multiarray._reconstruct, core.multiarray.scalar,
             np.ndarray, np.dtype]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes)
                  if n.endswith('DType')]
    return names


SAFE_GLOBALS = [HistoryBuffer] + _numpy_globals()
_DEFAULT_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_state(self) -> dict:
    """HistoryBuffer pickles its statistics methods as ``getattr(cls,
    name)``, which a weights-only load must refuse. The four default methods
    are re-registered by ``__setstate__`` anyway, so they are left out; only
    user-registered ones are kept (and then need a trusted full load)."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    custom = {
        k: v
        for k, v in self._statistics_methods.items()
        if k not in _DEFAULT_STATISTICS
    }
    if custom:
        state['statistics_methods'] = custom
    return state


HistoryBuffer.__getstate__ = _history_buffer_state


class UnsafeCheckpointError(RuntimeError):
    """The file holds objects other than tensors and training state."""


def safe_torch_load(filename: str, map_location=None):
    """``torch.load`` that only reconstructs weights and training state."""
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} does not exist')
    if osp.getsize(filename) == 0:
        raise RuntimeError(f'checkpoint {filename} is empty (0 bytes)')
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f'refused to load {filename}: it holds objects that are neither '
            f'tensors nor known training state, and diffkd never runs code '
            f'from a checkpoint ({err})') from err
    except (RuntimeError, EOFError) as err:
        raise RuntimeError(
            f'checkpoint {filename} is corrupt or truncated: {err}') from err


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename, map_location):
    return safe_torch_load(filename, map_location)


# ------------------------------------------------------------ safe writes
def fsync_tree(path: str) -> None:
    """Flush a file, or every file and folder under a folder, to disk."""
    if osp.isdir(path):
        for root, _, files in os.walk(path):
            for name in files:
                fsync_tree(osp.join(root, name))
            fsync_dir(root)
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Make a rename or a new entry in ``path`` durable (POSIX)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. a platform that cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def replace_durably(tmp: str, final: str) -> None:
    """``os.replace`` a fully written ``tmp`` onto ``final``: ``final`` is
    the old or the new content at any moment, never a partial one."""
    fsync_tree(tmp)
    os.replace(tmp, final)
    fsync_dir(osp.dirname(osp.abspath(final)))


def write_text_atomic(path: str, text: str) -> None:
    tmp = osp.join(osp.dirname(osp.abspath(path)),
                   f'.{osp.basename(path)}.tmp')
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_path(tmp)
        raise
    fsync_dir(osp.dirname(osp.abspath(path)))


def remove_path(path: str) -> None:
    if osp.isdir(path) and not osp.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    elif osp.lexists(path):
        try:
            os.remove(path)
        except OSError:
            pass
