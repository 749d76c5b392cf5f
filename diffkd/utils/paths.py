"""Where configs and tools live: ``diffkd/.mim/`` in an installed package
(the OpenMMLab convention), the repository root in a source checkout."""
import os.path as osp

_PKG = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _roots():
    return [osp.join(_PKG, '.mim'), osp.dirname(_PKG)]


def _find(kind: str, rel: str) -> str:
    if osp.isfile(rel):
        return osp.abspath(rel)
    for root in _roots():
        path = osp.join(root, kind, rel)
        if osp.isfile(path):
            return path
    raise FileNotFoundError(
        f'{kind[:-1]} {rel!r} not found in {[osp.join(r, kind) for r in _roots()]}')


def find_config(rel: str) -> str:
    """Path of a config given relative to ``configs/``."""
    return _find('configs', rel)


def find_tool(rel: str) -> str:
    """Path of a script given relative to ``tools/``."""
    return _find('tools', rel)
