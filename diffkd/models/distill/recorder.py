"""Feature points: which modules are matched, and capturing their outputs.

Features are declared by module-path patterns (``*`` is one path segment,
``**`` any number) or by a named preset. Hooks are registered once, record
only inside :meth:`FeatureRecorder.recording`, and are emptied after each
step, so nothing is held across iterations and gradient-checkpoint
recomputation does not record twice.
"""
import re
from contextlib import contextmanager
from typing import Dict, Iterable, List, Sequence, Union

import torch
import torch.nn as nn

FEATURE_PRESETS: Dict[str, List[str]] = {
    # BK-SDM: output of every down and up stage.
    'bk_sdm': ['down_blocks.*', 'up_blocks.*'],
    # Segmind distill-sd: every stage including the mid block.
    'blocks': ['down_blocks.*', 'mid_block', 'up_blocks.*'],
    # Segmind layer-level loss (SSD-1B, Vega): every resnet and attention.
    'layers': [
        'down_blocks.*.resnets.*', 'down_blocks.*.attentions.*', 'mid_block',
        'up_blocks.*.resnets.*', 'up_blocks.*.attentions.*'
    ],
    # KOALA: self-attention of every transformer layer.
    'self_attention': ['**.transformer_blocks.*.attn1'],
}


def _pattern_regex(pattern: str) -> 're.Pattern':
    parts = []
    for seg in pattern.split('.'):
        if seg == '**':
            parts.append(r'(?:[^.]+(?:\.[^.]+)*)')
        else:
            parts.append(re.escape(seg).replace(r'\*', r'[^.]+'))
    return re.compile(r'\.'.join(parts) + r'\Z')


def expand_patterns(patterns: Union[str, Sequence[str]],
                    module_names: Iterable[str]) -> List[str]:
    """Module names matching any pattern, in model order. A preset name is
    replaced by its patterns; a pattern that matches nothing is an error."""
    if isinstance(patterns, str):
        if patterns not in FEATURE_PRESETS:
            raise KeyError(f'unknown feature preset {patterns!r}; presets: '
                           f'{sorted(FEATURE_PRESETS)} (or give a list of '
                           'module-path patterns)')
        patterns = FEATURE_PRESETS[patterns]
    names = [n for n in module_names if n]
    out: List[str] = []
    for pattern in patterns:
        regex = _pattern_regex(pattern)
        hits = [n for n in names if regex.match(n)]
        if not hits:
            tops = sorted({n.split('.')[0] for n in names})
            raise ValueError(f'feature pattern {pattern!r} matches no module '
                             f'of the student UNet (top-level modules: '
                             f'{tops})')
        out.extend(h for h in hits if h not in out)
    return out


def _first_tensor(out):
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) or hasattr(out, 'to_tuple'):
        return out[0]
    raise TypeError(f'cannot take a feature from output of type '
                    f'{type(out).__name__}')


class FeatureRecorder:
    """Capture outputs of named submodules of ``model`` during a step."""

    def __init__(self, model: nn.Module, names: Sequence[str]):
        modules = dict(model.named_modules())
        missing = [n for n in names if n not in modules]
        if missing:
            raise KeyError(f'no module named {missing[0]!r} in '
                           f'{type(model).__name__}')
        self.names = list(names)
        self.outputs: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = {}
        self._active = False
        self._handles = [
            modules[n].register_forward_hook(self._make_hook(n))
            for n in self.names
        ]

    def _make_hook(self, name: str):

        def hook(module, args, output):
            if self._active:
                self.outputs[name] = _first_tensor(output)
                self.counts[name] = self.counts.get(name, 0) + 1

        return hook

    @contextmanager
    def recording(self):
        self.outputs, self.counts = {}, {}
        self._active = True
        try:
            yield self
        finally:
            self._active = False

    def clear(self):
        self.outputs, self.counts = {}, {}

    def remove(self):
        for h in self._handles:
            h.remove()
        self._handles = []
