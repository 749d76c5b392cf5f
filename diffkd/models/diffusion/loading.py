"""Loading pretrained components by hub id or local folder, with errors that
name the folder, subfolder or weight file that could not be read."""
import json
import os
import os.path as osp
import struct
import zipfile
from typing import Any, Optional

from diffkd.utils.hub import resolve_model_path

WEIGHT_SUFFIXES = ('.safetensors', '.bin', '.pt', '.pth', '.ckpt')
CONFIG_FILES = ('config.json', 'scheduler_config.json',
                'tokenizer_config.json', 'tokenizer.json', 'vocab.json')


class CorruptWeightsError(OSError):
    """A weight file that is empty, truncated or not in its own format."""


def weight_file_problem(path: str) -> Optional[str]:
    """What is certainly wrong with a weight file, or None.

    Only definite faults are reported (empty, cut short, not the format its
    name says), so that a failed load is never blamed on a good file.
    """
    size = osp.getsize(path)
    if size == 0:
        return 'is empty (0 bytes)'
    with open(path, 'rb') as f:
        head = f.read(64)
        if head.startswith(b'version https://git-lfs'):
            return ('is a Git LFS pointer, not the weights (fetch them with '
                    '`git lfs pull`)')
        if path.endswith('.safetensors'):
            # Layout: 8-byte little-endian header length, JSON header with
            # each tensor's byte range, then the tensor data.
            if size < 8:
                return f'is truncated ({size} bytes, not even a header)'
            (n, ) = struct.unpack('<Q', head[:8])
            if 8 + n > size:
                return (f'is truncated or not a safetensors file: its header '
                        f'needs {8 + n} bytes, the file has {size}')
            f.seek(8)
            try:
                header = json.loads(f.read(n))
                end = max([int(v['data_offsets'][1])
                           for k, v in header.items()
                           if k != '__metadata__'] or [0])
            except (ValueError, KeyError, TypeError, IndexError):
                return 'is not a safetensors file (unreadable header)'
            if 8 + n + end > size:
                return (f'is truncated: {size} bytes, its header describes '
                        f'{8 + n + end}')
            return None
    # torch.save writes a zip archive; a cut one has no central directory.
    if head.startswith(b'PK') and not zipfile.is_zipfile(path):
        return f'is truncated ({size} bytes, the zip archive is incomplete)'
    return None


def _bad_weight_files(folder: str):
    for name in sorted(os.listdir(folder)):
        path = osp.join(folder, name)
        if name.endswith(WEIGHT_SUFFIXES) and osp.isfile(path):
            problem = weight_file_problem(path)
            if problem:
                yield path, problem


def _contents(folder: str) -> str:
    found = sorted(n for n in os.listdir(folder) if not n.startswith('.'))
    if not found:
        return 'is empty'
    return 'holds ' + ', '.join(found[:8]) + (', ...' if len(found) > 8
                                              else '')


def _looks_local(name: str) -> bool:
    """A path rather than a hub id (``org/name`` has one slash at most)."""
    return name.startswith(('/', './', '../', '~')) or name.count('/') > 1 \
        or (osp.sep != '/' and osp.sep in name)


def _with_context(err: BaseException, message: str) -> BaseException:
    """``err``'s type with ``message``, or an OSError where that type cannot
    be built from a message (e.g. UnicodeDecodeError)."""
    try:
        return type(err)(message)
    except Exception:
        return OSError(message)


def load_component(cls: Any,
                   name_or_path: str,
                   subfolder: Optional[str] = None,
                   **kwargs) -> Any:
    """``cls.from_pretrained(name_or_path, subfolder=...)`` with clear errors.

    Never passes ``trust_remote_code``: remote code runs only when a user's
    config asks for it through ``kwargs``.
    """
    path = resolve_model_path(name_or_path)
    where = f'{name_or_path}' + (f' (subfolder {subfolder!r})'
                                 if subfolder else '')
    folder = None
    if isinstance(path, str) and not osp.exists(osp.expanduser(path)) \
            and _looks_local(path):
        # Handed on, it would be taken for a hub id and fail on the network.
        raise FileNotFoundError(
            f'cannot load {cls.__name__} from {where}: {path} does not exist')
    if osp.isdir(path):
        folder = osp.join(path, subfolder) if subfolder else path
        if not osp.isdir(folder):
            raise FileNotFoundError(
                f'cannot load {cls.__name__} from {where}: folder {folder} '
                f'does not exist ({path} {_contents(path)})')
        if not any(osp.exists(osp.join(folder, f)) for f in CONFIG_FILES):
            raise FileNotFoundError(
                f'cannot load {cls.__name__} from {where}: {folder} has no '
                f'config.json ({folder} {_contents(folder)}); a diffusers/'
                'transformers save folder keeps its config.json next to the '
                'weights')
    try:
        if subfolder:
            return cls.from_pretrained(path, subfolder=subfolder, **kwargs)
        return cls.from_pretrained(path, **kwargs)
    except Exception as err:
        bad = list(_bad_weight_files(folder)) if folder else []
        if bad:
            files = '; '.join(f'{p} {why}' for p, why in bad)
            raise CorruptWeightsError(
                f'cannot load {cls.__name__} from {where}: weight file '
                f'{files}. Re-download or re-export it.') from err
        if isinstance(err, (OSError, ValueError)):
            raise _with_context(
                err, f'cannot load {cls.__name__} from {where}: {err}') \
                from err
        raise
