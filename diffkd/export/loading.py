"""Reading a run's export: the folder, its ``export_info.json``, and the
pipeline it makes (``tools/infer.py``, ``diffkd.apis.load_pipeline``)."""
import os
import os.path as osp
from typing import Dict, Optional

import torch

from diffkd.models.diffusion.components import (component_class,
                                                load_scheduler)
from diffkd.models.diffusion.loading import (WEIGHT_SUFFIXES,
                                             CorruptWeightsError,
                                             load_component,
                                             weight_file_problem)
from diffkd.utils.hub import resolve_model_path
from .pipeline import (EXPORT_INFO, MODEL_INDEX, component_sources,
                       read_export_info)


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
    """``export_info.json`` of a work dir or export folder."""
    return read_export_info(find_export(path))


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
    if base_model is None and osp.isfile(osp.join(export, MODEL_INDEX)):
        base = export  # a complete pipeline folder: needs nothing else
    else:
        base = resolve_model_path(base_model or info['base_model'])
    cls = getattr(diffusers, info.get('pipeline_class', 'DiffusionPipeline'))
    kwargs = {}
    # Through the training's own loader: a damaged weight file is named,
    # with what is wrong with it.
    if 'unet' in info.get('parts', []):
        kwargs['unet'] = load_component(
            UNet2DConditionModel, export, subfolder='unet',
            torch_dtype=torch_dtype)
    if 'scheduler' in info.get('parts', []):
        # e.g. LCMScheduler for a consistency-distilled UNet or LoRA
        kwargs['scheduler'] = load_scheduler(export)
    # Components the run took from elsewhere than the base pipeline (e.g. a
    # distilled student's UNet under a LoRA, a fixed VAE).
    # A complete pipeline folder holds them already.
    sources = {} if base == export else component_sources(info)
    for name, spec in sources.items():
        if name not in kwargs:
            kwargs[name] = _load_source(spec, torch_dtype)
    if cls.__name__ == 'StableDiffusionPipeline':
        kwargs.update(safety_checker=None, requires_safety_checker=False)
    pipe = cls.from_pretrained(base, torch_dtype=torch_dtype, **kwargs)
    if 'lora' in info.get('parts', []):
        _load_lora(pipe, export)
    return pipe.to(device)


def _load_source(spec: Dict, torch_dtype: torch.dtype):
    spec = dict(spec)
    cls = component_class(spec.pop('class'))
    if issubclass(cls, torch.nn.Module):
        spec.setdefault('torch_dtype', torch_dtype)
    return load_component(cls, spec.pop('name_or_path'),
                          spec.pop('subfolder', None), **spec)


def _load_lora(pipe, export: str) -> None:
    folder = osp.join(export, 'lora')
    try:
        pipe.load_lora_weights(folder)
    except Exception as err:
        names = sorted(os.listdir(folder)) if osp.isdir(folder) else []
        bad = [(p, weight_file_problem(p))
               for p in (osp.join(folder, n) for n in names
                         if n.endswith(WEIGHT_SUFFIXES))]
        bad = [(p, why) for p, why in bad if why]
        if bad:
            files = '; '.join(f'{p} {why}' for p, why in bad)
            raise CorruptWeightsError(
                f'cannot load the LoRA of {export}: weight file {files}. '
                'Re-download or re-export it.') from err
        raise
