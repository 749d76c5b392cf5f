"""Which pipeline component comes from where.

A model config names a base pipeline (``model='stabilityai/...'``) and may
take any of its components from elsewhere, in one form for all of them::

    unet='path/to/student/unet'                       # a folder or hub id
    components=dict(vae='madebyollin/sdxl-vae-fp16-fix')
    components=dict(text_encoder=dict(name_or_path='org/model',
                                      subfolder='text_encoder'))

A spec is None (the base pipeline's own subfolder), a path or hub id (the
component at its root), a dict (``name_or_path`` defaulting to the base
pipeline, ``subfolder``, and keyword arguments of ``from_pretrained``) or,
from Python, a ready module.
"""
from typing import Any, Dict, Optional, Union

import diffusers
import torch.nn as nn
import transformers
from diffusers import DDPMScheduler

from diffkd.utils.hub import resolve_model_path
from .loading import load_component

Spec = Union[None, str, dict, nn.Module]


def normalized_spec(spec: Spec, model: str,
                    subfolder: Optional[str]) -> Optional[dict]:
    """``dict(name_or_path=..., subfolder=..., **from_pretrained kwargs)``
    for a spec, or None for a ready module."""
    if isinstance(spec, nn.Module):
        return None
    if spec is None:
        return dict(name_or_path=model, subfolder=subfolder)
    if isinstance(spec, str):
        return dict(name_or_path=spec, subfolder=None)
    if isinstance(spec, dict):
        spec = dict(spec)
        out = dict(name_or_path=spec.pop('name_or_path', model),
                   subfolder=spec.pop('subfolder', None))
        out.update(spec)
        return out
    raise TypeError(f'a component must be None, a path or hub id, a dict or '
                    f'a module, got {type(spec).__name__}')


def build_component(cls: Any, spec: Spec, model: str,
                    subfolder: Optional[str]) -> Any:
    """The component ``cls`` described by ``spec`` (see the module doc);
    ``subfolder`` is where the base pipeline keeps it."""
    if isinstance(spec, nn.Module):
        return spec
    kwargs = normalized_spec(spec, model, subfolder)
    name, sub = kwargs.pop('name_or_path'), kwargs.pop('subfolder')
    if cls is DDPMScheduler:
        return load_scheduler(name, sub, training=True, **kwargs)
    return load_component(cls, name, sub, **kwargs)


def build_unet(unet: Spec, model: str):
    """The trained UNet: the base pipeline's own, or one from elsewhere (a
    distilled student); see :func:`build_component`."""
    from diffusers import UNet2DConditionModel
    return build_component(UNet2DConditionModel, unet, model, 'unet')


def load_scheduler(name_or_path: str, subfolder: Optional[str] = 'scheduler',
                   training: bool = False, **kwargs):
    """The scheduler in a saved config: ``DDPMScheduler`` to noise training
    batches (``training=True``), or the class named in the config, the one
    ``DiffusionPipeline.from_pretrained`` samples with."""
    scheduler = load_component(DDPMScheduler, name_or_path, subfolder,
                               **kwargs)
    if training:
        return scheduler
    # from_pretrained stamps its own class name on the config: read the
    # saved one from the raw file.
    saved = DDPMScheduler.load_config(
        resolve_model_path(name_or_path), subfolder=subfolder)
    cls = getattr(diffusers, saved.get('_class_name', 'DDPMScheduler'),
                  DDPMScheduler)
    return cls.from_config(scheduler.config)


def check_component_names(components: Optional[dict], known: Dict[str, Any],
                          owner: str) -> dict:
    """``components`` with its names checked against a model's own."""
    components = dict(components or {})
    if 'unet' in components:
        raise ValueError(
            f"{owner} takes the UNet as unet=..., not components['unet']")
    unknown = sorted(set(components) - set(known))
    if unknown:
        from diffkd.registry import closest_names, quoted_names
        hints = []
        for name in unknown:
            close = closest_names(name, list(known))
            hints.append(f'{name!r}' + (
                f' (did you mean {quoted_names(close)}?)' if close else ''))
        raise ValueError(
            f'{owner} got unknown component {", ".join(hints)}; its '
            f'components are: {", ".join(known)}')
    return components


def component_class(name: str):
    """A component class recorded by name in an export
    (``AutoencoderKL``, ``CLIPTextModel``, ...)."""
    for library in (diffusers, transformers):
        cls = getattr(library, name, None)
        if cls is not None:
            return cls
    raise ValueError(f'unknown component class {name!r}')
