"""A run's export as a complete pipeline folder with its model card: made
at the end of training in ``<work_dir>/final/``, by
``tools/export_pipeline.py`` anywhere, and staged by
``tools/push_to_hub.py`` before an upload."""
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Tuple

from .card import write_model_card
from .loading import find_export, load_pipeline
from .pipeline import (EXPORT_INFO, complete_pipeline, local_model_dir,
                       place_tree, read_export_info)


def _work_dir_of(path: str, export: str) -> Optional[str]:
    """The run's work dir: ``path`` when given one, else the export's
    parent when it holds the run's logs."""
    if osp.abspath(path) != osp.abspath(export):
        return path
    parent = osp.dirname(osp.abspath(export))
    return parent if osp.isfile(osp.join(parent, 'last_checkpoint')) or \
        any(osp.isdir(osp.join(parent, n, 'test'))
            for n in os.listdir(parent)) else None


def finish_export(export_dir: str, work_dir: Optional[str] = None,
                  base_model: Optional[str] = None, mode: str = 'hardlink',
                  repo_id: Optional[str] = None,
                  metrics: Optional[Dict] = None) -> Dict[str, str]:
    """Complete ``export_dir`` into a pipeline folder and write its card."""
    origin = complete_pipeline(export_dir, base_model=base_model, mode=mode)
    info = read_export_info(export_dir)
    write_model_card(export_dir, work_dir=work_dir, repo_id=repo_id,
                     metrics=metrics,
                     base_dir=local_model_dir(base_model or
                                              info['base_model']))
    return origin


def export_pipeline_folder(path: str, out_dir: str,
                           base_model: Optional[str] = None,
                           fuse_lora: bool = False, mode: str = 'hardlink',
                           repo_id: Optional[str] = None,
                           metrics: Optional[Dict] = None) -> str:
    """Write the export of ``path`` (a work dir or an export folder) as a
    complete pipeline folder ``out_dir``: the export's files and the base
    components hard-linked (``mode='copy'``: copied), a LoRA kept in
    ``lora/`` or, with ``fuse_lora``, merged into the saved weights.
    Written under a temporary name and renamed: never half a folder."""
    if osp.exists(out_dir):
        raise FileExistsError(f'{out_dir} exists; choose a new folder')
    export = find_export(path)
    info = read_export_info(export)
    work_dir = _work_dir_of(path, export)
    tmp = out_dir.rstrip('/') + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if fuse_lora and 'lora' in info.get('parts', []):
            pipe = load_pipeline(export, base_model=base_model)
            pipe.fuse_lora()
            pipe.unload_lora_weights()
            pipe.save_pretrained(tmp, safe_serialization=True)
            info.update(parts=['unet'], fused_lora=True)
            info.pop('base_unet', None)
            if base_model:
                info['base_model'] = base_model
            with open(osp.join(tmp, EXPORT_INFO), 'w') as f:
                json.dump(info, f, indent=2)
        else:
            names = [n for n in os.listdir(export) if not n.startswith('.')
                     and n not in ('README.md', 'model_index.json')]
            os.makedirs(tmp)
            for name in names:
                src = osp.join(export, name)
                if osp.isdir(src):
                    place_tree(src, osp.join(tmp, name), mode)
                else:
                    shutil.copy2(src, osp.join(tmp, name))
        finish_export(tmp, work_dir=work_dir, base_model=base_model,
                      mode=mode, repo_id=repo_id, metrics=metrics)
        os.replace(tmp, out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def upload_plan(folder: str) -> List[Tuple[str, int]]:
    """``(path in the repo, bytes)`` of every file an upload of ``folder``
    sends (hidden files are left out)."""
    plan = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
        for name in sorted(files):
            if name.startswith('.'):
                continue
            path = osp.join(root, name)
            plan.append((osp.relpath(path, folder), osp.getsize(path)))
    return plan
