"""Load what a training run exported as a plain diffusers pipeline."""
import json
import os.path as osp
from typing import Dict, Optional

import torch

from diffkd.utils.hub import resolve_model_path

EXPORT_INFO = 'export_info.json'


def find_export(path: str) -> str:
    """The export folder for a work dir (its ``final/``) or an export dir."""
    if osp.isfile(osp.join(path, EXPORT_INFO)):
        return path
    final = osp.join(path, 'final')
    if osp.isfile(osp.join(final, EXPORT_INFO)):
        return final
    raise FileNotFoundError(
        f'{path} has no diffkd export: expected {EXPORT_INFO} in it or in '
        f'{final} (has the training run finished?)')


def load_export_info(path: str) -> Dict:
    with open(osp.join(find_export(path), EXPORT_INFO)) as f:
        return json.load(f)


def load_pipeline(path: str,
                  base_model: Optional[str] = None,
                  torch_dtype: torch.dtype = torch.float32,
                  device: str = 'cpu'):
    """The base pipeline named in the export, with the trained parts in.

    ``path`` is a work dir or one of its export folders (``final``,
    ``iter_N``); ``base_model`` overrides the pipeline the run started from.
    """
    import diffusers
    from diffusers import UNet2DConditionModel
    export = find_export(path)
    info = load_export_info(export)
    base = resolve_model_path(base_model or info['base_model'])
    cls = getattr(diffusers, info.get('pipeline_class', 'DiffusionPipeline'))
    kwargs = {}
    if 'unet' in info.get('parts', []):
        kwargs['unet'] = UNet2DConditionModel.from_pretrained(
            osp.join(export, 'unet'), torch_dtype=torch_dtype)
    elif info.get('base_unet'):
        # e.g. a LoRA trained on a distilled student's UNet
        kwargs['unet'] = UNet2DConditionModel.from_pretrained(
            resolve_model_path(info['base_unet']), torch_dtype=torch_dtype)
    if cls.__name__ == 'StableDiffusionPipeline':
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    pipe = cls.from_pretrained(base, torch_dtype=torch_dtype, **kwargs)
    if 'lora' in info.get('parts', []):
        pipe.load_lora_weights(osp.join(export, 'lora'))
    return pipe.to(device)
