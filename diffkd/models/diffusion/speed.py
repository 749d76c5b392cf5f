"""Speed switches for a UNet, shared by the trained UNet and a teacher.

* ``attention``: ``'sdpa'`` (PyTorch's fused scaled-dot-product attention,
  diffusers' default) or ``'eager'`` (explicit softmax(QK^T)V, for
  comparison and debugging).
* ``channels_last``: NHWC memory layout for the convolutions.
* ``compile``: ``True`` or a dict of ``torch.compile`` arguments; the module
  is compiled in place, so its parameter names (and checkpoints) do not
  change.
"""
from contextlib import nullcontext
from typing import Dict, Optional, Union

import torch
import torch.nn as nn

ATTENTION = ('sdpa', 'eager')


def configure_unet(unet: nn.Module,
                   attention: Optional[str] = None,
                   channels_last: bool = False,
                   compile: Union[bool, Dict, None] = None) -> nn.Module:
    speed_options(attention, channels_last, compile)  # validates
    if attention is not None:
        from diffusers.models.attention_processor import (AttnProcessor,
                                                          AttnProcessor2_0)
        unet.set_attn_processor(
            AttnProcessor2_0() if attention == 'sdpa' else AttnProcessor())
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    if compile:
        unet.compile(**(compile if isinstance(compile, dict) else {}))
    return unet


def speed_options(attention=None, channels_last=False, compile=None) -> Dict:
    """The switches as a dict (validated), to hand on to a teacher."""
    if attention is not None and attention not in ATTENTION:
        raise ValueError(f'attention must be one of {ATTENTION}, got '
                         f'{attention!r}')
    if compile is not None and not isinstance(compile, (bool, dict)):
        raise TypeError(f'compile must be a bool or a dict of torch.compile '
                        f'arguments, got {type(compile).__name__}')
    return dict(attention=attention, channels_last=bool(channels_last),
                compile=compile)


def eager(module: nn.Module):
    """Context in which a compiled module runs uncompiled (one-off calls
    with other shapes, which would otherwise trigger a recompile)."""
    if getattr(module, '_compiled_call_impl', None) is None:
        return nullcontext()
    return torch.compiler.set_stance('force_eager')
