"""Where pretrained names point: hub ids, local folders and the toy world.

A name is handed to diffusers/transformers ``from_pretrained`` unchanged,
except names under ``diffkd-toy/``, which resolve to folders in the diffkd
cache (``$DIFFKD_HOME``, default ``~/.cache/diffkd``). Resolving only looks
the folder up: the toy world is built by one explicit call,
``python tools/build_toy_world.py`` (:func:`diffkd.toy.build_toy_world`).
Loading then goes through the very same ``from_pretrained`` path as a real
model.

This module also holds the cache's build protocol (a file lock per folder,
a build into a temporary sibling renamed into place, a ``.complete``
marker), so that the builders and the resolver agree on what "built" means
without knowing each other.
"""
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, List, Optional

TOY_PREFIX = 'diffkd-toy/'
BUILD_TOOL = 'tools/build_toy_world.py'
_DONE = '.complete'


class ToyAssetNotBuiltError(FileNotFoundError):
    """A ``diffkd-toy/<name>`` folder is not (completely) built yet."""


def diffkd_home() -> str:
    return osp.expanduser(
        os.environ.get('DIFFKD_HOME', osp.join('~', '.cache', 'diffkd')))


def toy_asset_dir(name: str, home: Optional[str] = None) -> str:
    """Folder of the toy asset ``name`` in ``home`` (default
    :func:`diffkd_home`), built or not."""
    return osp.join(osp.expanduser(home or diffkd_home()), 'toy', name)


def is_built(path: str) -> bool:
    """True when a cache folder was completely built."""
    return osp.exists(osp.join(path, _DONE))


def built_toy_assets(home: Optional[str] = None) -> List[str]:
    """Names of the toy assets completely built in ``home``."""
    root = osp.dirname(toy_asset_dir('x', home))
    if not osp.isdir(root):
        return []
    return sorted(n for n in os.listdir(root)
                  if not n.startswith('.') and is_built(osp.join(root, n)))


def build_command(name: Optional[str] = None) -> str:
    """The shell command that builds toy asset ``name`` (all when None)."""
    from .paths import find_tool
    tool = BUILD_TOOL
    if not osp.isfile(tool):  # not in a checkout's root: the installed copy
        try:
            tool = find_tool(osp.basename(BUILD_TOOL))
        except FileNotFoundError:
            pass
    return f'python {tool}' + (f' --only {name}' if name else '')


def build_folder(path: str,
                 build: Callable[[str], None],
                 rebuild: bool = False,
                 on_wait: Optional[Callable[[], None]] = None) -> bool:
    """Run ``build(tmp_dir)`` once for the cache folder ``path``.

    Holds ``path + '.lock'`` while building, so concurrent processes build
    once and the others wait; builds into a temporary sibling renamed into
    place, so a crash never leaves a folder that looks complete. With
    ``rebuild`` a complete folder is replaced. ``on_wait()`` is called
    before waiting for another process's build. Returns whether it built.
    """
    from filelock import FileLock, Timeout
    if is_built(path) and not rebuild:
        return False
    os.makedirs(osp.dirname(path), exist_ok=True)
    lock = FileLock(path + '.lock')
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        if is_built(path) and not rebuild:  # built by another process
            return False
        tmp = tempfile.mkdtemp(prefix=f'.{osp.basename(path)}-',
                               dir=osp.dirname(path))
        try:
            build(tmp)
            open(osp.join(tmp, _DONE), 'w').close()
            if osp.exists(path):
                shutil.rmtree(path)
            os.replace(tmp, path)
        finally:
            if osp.exists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
    finally:
        lock.release()
    return True


def resolve_model_path(name_or_path: str) -> str:
    """Map a ``diffkd-toy/<asset>`` name to its folder in the cache; any
    other name is returned as given (hub id or local path).

    Raises:
        ToyAssetNotBuiltError: the toy asset is not built; the message
            names the command that builds it.
    """
    if not isinstance(name_or_path, str) or not name_or_path.startswith(
            TOY_PREFIX):
        return name_or_path
    name = name_or_path[len(TOY_PREFIX):].strip('/')
    path = toy_asset_dir(name)
    if is_built(path):
        return path
    home = diffkd_home()
    built = built_toy_assets(home)
    raise ToyAssetNotBuiltError(
        f'toy asset {TOY_PREFIX}{name} is not built in $DIFFKD_HOME={home} '
        f'(no complete folder {path}); build it with: '
        f'{build_command(name)}, or the whole toy world (seconds) with: '
        f'{build_command()}' +
        (f' (built there: {", ".join(TOY_PREFIX + n for n in built)})'
         if built else ''))
