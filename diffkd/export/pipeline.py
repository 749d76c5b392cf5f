"""Turn an export folder (``final/``: ``unet/`` or ``lora/`` plus
``export_info.json``) into a complete diffusers pipeline folder.

Only the trained parts are written by training. Every other component the
base pipeline's ``model_index.json`` lists (VAE, text encoders, tokenizers,
scheduler, and for a LoRA run the UNet the adapter was trained on) is
*hard-linked* from the base model's files: the folder is complete and
self-contained for ``DiffusionPipeline.from_pretrained``, yet takes no
extra disk space. Where a hard link is impossible (another file system,
a file system without links) the file is copied; ``mode='copy'`` always
copies. Files of the hub cache are linked to their blobs, never to the
cache's symlinks, so the folder survives moving or cache pruning. A
hard-linked file is the base model's file: it keeps its permissions (a
copy gets the umask's).
"""
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional

from diffkd.utils.hub import resolve_model_path

EXPORT_INFO = 'export_info.json'
MODEL_INDEX = 'model_index.json'
LINK_MODES = ('hardlink', 'copy')


def read_export_info(export_dir: str) -> Dict:
    path = osp.join(export_dir, EXPORT_INFO)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{export_dir} is not a diffkd export: it has no {EXPORT_INFO} '
            '(give a run\'s final/ or iter_N/ folder, or its work dir)')
    with open(path) as f:
        return json.load(f)


def component_sources(info: Dict) -> Dict[str, Dict]:
    """The components an export took from elsewhere than its base pipeline
    (``export_info.json``'s ``components``; an older export names only a
    LoRA's UNet, as ``base_unet``)."""
    sources = dict(info.get('components') or {})
    if not sources and info.get('base_unet'):
        sources['unet'] = {'class': 'UNet2DConditionModel',
                           'name_or_path': info['base_unet']}
    return sources


def local_model_dir(name_or_path: str) -> str:
    """A local folder for a pipeline or UNet: a folder as is, a toy name
    resolved, a hub id from the local hub cache (downloaded only when the
    hub is reachable and the files are not cached)."""
    path = resolve_model_path(name_or_path)
    if osp.isdir(path):
        return path
    from huggingface_hub import snapshot_download
    return snapshot_download(path)


def _source_dir(spec: Dict, name: str) -> str:
    """The folder of component ``name`` taken from elsewhere than the base
    pipeline (``spec`` as the model recorded it: ``name_or_path`` and
    ``subfolder``); a whole pipeline given as the source gives its
    ``name`` folder."""
    root = local_model_dir(spec['name_or_path'])
    if spec.get('subfolder'):
        return osp.join(root, spec['subfolder'])
    if osp.isfile(osp.join(root, MODEL_INDEX)) and \
            osp.isdir(osp.join(root, name)):
        return osp.join(root, name)
    return root


def _place(src: str, dst: str, mode: str) -> None:
    src = osp.realpath(src)  # hub cache: link the blob, not the symlink
    if mode == 'hardlink':
        try:
            os.link(src, dst)
            return
        except OSError:  # another file system, or no hard links there
            pass
    shutil.copyfile(src, dst)  # a new file: the umask's permissions


def place_tree(src: str, dst: str, mode: str = 'hardlink') -> List[str]:
    """Hard-link (or copy) every file under ``src`` to ``dst``."""
    if mode not in LINK_MODES:
        raise ValueError(f'mode must be one of {LINK_MODES}, got {mode!r}')
    placed = []
    for folder, dirs, files in os.walk(src, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith('.')]
        rel = osp.relpath(folder, src)
        out = osp.normpath(osp.join(dst, rel))
        os.makedirs(out, exist_ok=True)
        for name in files:
            if name.startswith('.'):
                continue  # e.g. a cache's .complete marker
            _place(osp.join(folder, name), osp.join(out, name), mode)
            placed.append(osp.join(out, name))
    return placed


def pipeline_components(model_index: Dict) -> List[str]:
    """Component folders a ``model_index.json`` names (``None`` entries,
    e.g. a missing safety checker, are no folder)."""
    return sorted(k for k, v in model_index.items()
                  if not k.startswith('_') and isinstance(v, (list, tuple))
                  and len(v) == 2 and v[0] is not None)


def complete_pipeline(export_dir: str,
                      base_model: Optional[str] = None,
                      mode: str = 'hardlink') -> Dict[str, str]:
    """Add the base pipeline's components that ``export_dir`` lacks, and
    its ``model_index.json``.

    Returns ``{component: 'trained' | 'base' | 'source'}`` ('source': from
    where the model config took it, e.g. a distilled student's UNet under
    a LoRA, a fixed VAE), also recorded in ``export_info.json`` as
    ``component_origin``.
    """
    info = read_export_info(export_dir)
    base = local_model_dir(base_model or info['base_model'])
    index_path = osp.join(base, MODEL_INDEX)
    if not osp.isfile(index_path):
        raise FileNotFoundError(
            f'base model {base_model or info["base_model"]} ({base}) has no '
            f'{MODEL_INDEX}: give the diffusers pipeline the run started '
            'from with --base-model')
    with open(index_path) as f:
        index = json.load(f)
    if info.get('pipeline_class'):
        index['_class_name'] = info['pipeline_class']
    sources = component_sources(info)
    origin = {}
    for name in pipeline_components(index):
        out = osp.join(export_dir, name)
        if osp.isdir(out):
            origin[name] = 'trained'
            continue
        if name in sources:
            src, origin[name] = _source_dir(sources[name], name), 'source'
        else:
            src, origin[name] = osp.join(base, name), 'base'
        if not osp.isdir(src):
            raise FileNotFoundError(
                f'{base}/{MODEL_INDEX} lists component {name!r} but '
                f'{src} does not exist')
        place_tree(src, out, mode)
    with open(osp.join(export_dir, MODEL_INDEX), 'w') as f:
        json.dump(index, f, indent=2)
        f.write('\n')
    info['component_origin'] = origin
    with open(osp.join(export_dir, EXPORT_INFO), 'w') as f:
        json.dump(info, f, indent=2)
    return origin


def is_pipeline_folder(path: str) -> bool:
    return osp.isfile(osp.join(path, MODEL_INDEX))
