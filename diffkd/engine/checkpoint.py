"""Reading checkpoints as data, and writing files crash-safely.

torch >= 2.6 loads with ``weights_only=True`` by default, and mmengine 0.10's
training state holds numpy arrays. Rather than switching ``weights_only``
off, which would execute whatever a pickle carries, :func:`safe_torch_load`
keeps the safe loader and allows exactly the data types training state is
made of. Nothing here changes mmengine: :class:`~diffkd.engine.runner.
DiffusionRunner` calls these helpers from its own load and save.

The helpers at the end write files so that a crash leaves the old content
or the new one, never a part (see :class:`~diffkd.engine.hooks.
SafeCheckpointHook`).
"""
import os
import os.path as osp
import pickle
import shutil
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn as nn
from mmengine.logging.history_buffer import HistoryBuffer


def _numpy_globals():
    core = getattr(np, '_core', None) or np.core
    names = [core.multiarray._reconstruct, core.multiarray.scalar,
             np.ndarray, np.dtype]
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        names += [getattr(dtypes, n) for n in dir(dtypes)
                  if n.endswith('DType')]
    return names


# HistoryBuffer: only to read checkpoints written before the message hub was
# saved as plain data (its state is numbers; its methods are not unpickled).
SAFE_GLOBALS = [HistoryBuffer] + _numpy_globals()


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


# ------------------------------------------------- message hub as plain data
def message_hub_to_plain(state: dict) -> dict:
    """A ``MessageHub.state_dict()`` whose HistoryBuffers are plain dicts of
    tensors, which a weights-only load accepts without allowing any
    mmengine class. Statistics methods registered on a buffer are code and
    are not saved; the default ones (min, max, current, mean) always
    exist."""
    scalars = {}
    for key, value in state.get('log_scalars', {}).items():
        if isinstance(value, HistoryBuffer):
            log, count = value.data
            value = dict(
                log_history=torch.from_numpy(
                    np.asarray(log, dtype=np.float64).copy()),
                count_history=torch.from_numpy(
                    np.asarray(count, dtype=np.int64).copy()),
                max_length=int(value.max_length))
        scalars[key] = value
    return dict(state, log_scalars=scalars)


def message_hub_from_plain(state: dict) -> dict:
    """The inverse of :func:`message_hub_to_plain`; HistoryBuffers of older
    checkpoints are kept as they are."""
    scalars = {}
    for key, value in state.get('log_scalars', {}).items():
        if isinstance(value, dict) and 'log_history' in value:
            value = HistoryBuffer(
                value['log_history'].numpy(),
                value['count_history'].numpy(), value['max_length'])
        scalars[key] = value
    return dict(state, log_scalars=scalars)


# ------------------------------------------------------ state-dict layout
def state_layout(model: nn.Module) -> Tuple[Dict[str, tuple],
                                            Dict[str, tuple]]:
    """(what a checkpoint of ``model`` holds, everything ``model`` can
    load): name -> shape. The first is its ``state_dict()``, which leaves
    out frozen parts (teacher, VAE, text encoders); the second adds them."""
    saved = {k: tuple(v.shape) for k, v in model.state_dict().items()
             if hasattr(v, 'shape')}
    known = dict(saved)
    for name, tensor in list(model.named_parameters(
            remove_duplicate=False)) + list(model.named_buffers(
                remove_duplicate=False)):
        known.setdefault(name, tuple(tensor.shape))
    return saved, known


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
