"""Feature points: which modules are matched, and capturing their outputs.

Features are declared by module-path patterns (``*`` is one path segment,
``**`` any number) or by a named preset. Hooks are registered once, record
only inside :meth:`FeatureRecorder.recording`, and are emptied after each
step, so nothing is held across iterations and gradient-checkpoint
recomputation does not record twice.
"""
import re
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Dict, Iterable, List, Sequence, Tuple, Union

import torch
import torch.nn as nn

from ..compression.student import teacher_name

# How a student's last down stage that lost its teacher's downsampler
# (BK-SDM-Tiny, tiny-sd) is paired; every other student module is paired
# with the teacher module the module map names.
LAST_DOWN_RULES = ('last_layer', 'proj_out', 'mirror_up')


@dataclass(frozen=True)
class FeaturePreset:
    """A published method's feature pairs, as rules on the student UNet.

    Args:
        patterns: student module paths (``*`` one segment, ``**`` any).
        optional: those of ``patterns`` that may match nothing (a student
            without a mid block).
        last_down: the pairing of a last down stage without its teacher's
            downsampler: ``'last_layer'``, the teacher stage's last layer,
            before it downsamples; ``'proj_out'``, the ``proj_out`` of the
            last attention of both stages, before the residual add
            (BK-SDM); ``'mirror_up'``, the teacher's up stage that mirrors
            the next (removed) down stage (distill-sd).
        source: where the pair list comes from.
    """
    patterns: Tuple[str, ...]
    optional: Tuple[str, ...] = ()
    last_down: str = 'last_layer'
    source: str = ''

    def __post_init__(self):
        if self.last_down not in LAST_DOWN_RULES:
            raise ValueError(f'last_down must be one of {LAST_DOWN_RULES}, '
                             f'got {self.last_down!r}')


_DISTILL_SD = FeaturePreset(
    patterns=('down_blocks.*', 'mid_block', 'up_blocks.*'),
    optional=('mid_block', ),
    last_down='mirror_up',
    source='segmind/distill-sd distill_training.py (cast_hook, '
    'loss_features)')

FEATURE_PRESETS: Dict[str, FeaturePreset] = {
    # BK-SDM: every down and up stage output; a tiny student's last stage
    # as proj_out of its attention vs. the teacher stage's last attention.
    'bk_sdm': FeaturePreset(
        patterns=('down_blocks.*', 'up_blocks.*'),
        last_down='proj_out',
        source='Nota-NetsPresso/BK-SDM (formerly nota-ai/bk-sdm) '
        'src/kd_train_text_to_image.py (mapping_layers_tea/_stu)'),
    # Segmind distill-sd (small-sd, tiny-sd): every stage and the mid block
    # where the student has one; tiny's last down stage vs. the teacher's
    # first up stage.
    'distill_sd': _DISTILL_SD,
    'blocks': _DISTILL_SD,  # the name this preset had first
    # Segmind layer-level loss (SSD-1B): every resnet and attention output,
    # the student's one-resnet mid block vs. the teacher's mid block.
    'layers': FeaturePreset(
        patterns=('down_blocks.*.resnets.*', 'down_blocks.*.attentions.*',
                  'mid_block', 'up_blocks.*.resnets.*',
                  'up_blocks.*.attentions.*'),
        source='segmind/SSD-1B distill_sdxl.py (cast_hook level '
        "'sub_block'; commit 3bf633b, removed from the repository in "
        '97c20bb)'),
    # KOALA: self-attention of every transformer layer (its training code
    # is not published; this is diffkd's reading of the paper).
    'self_attention': FeaturePreset(
        patterns=('**.transformer_blocks.*.attn1', ),
        source='KOALA, arXiv 2312.04005 (no public training code)'),
}


def _pattern_regex(pattern: str) -> 're.Pattern':
    parts = []
    for seg in pattern.split('.'):
        if seg == '**':
            parts.append(r'(?:[^.]+(?:\.[^.]+)*)')
        else:
            parts.append(re.escape(seg).replace(r'\*', r'[^.]+'))
    return re.compile(r'\.'.join(parts) + r'\Z')


def get_preset(name: str) -> FeaturePreset:
    if name not in FEATURE_PRESETS:
        raise KeyError(f'unknown feature preset {name!r}; presets: '
                       f'{sorted(FEATURE_PRESETS)} (or give a list of '
                       'module-path patterns)')
    return FEATURE_PRESETS[name]


def expand_patterns(patterns: Union[str, Sequence[str]],
                    module_names: Iterable[str]) -> List[str]:
    """Module names matching any pattern, in model order. A preset name is
    replaced by its patterns; a pattern that matches nothing is an error
    (unless the preset marks it optional)."""
    optional: Sequence[str] = ()
    if isinstance(patterns, str):
        preset = get_preset(patterns)
        patterns, optional = preset.patterns, preset.optional
    names = [n for n in module_names if n]
    out: List[str] = []
    for pattern in patterns:
        regex = _pattern_regex(pattern)
        hits = [n for n in names if regex.match(n)]
        if not hits and pattern not in optional:
            tops = sorted({n.split('.')[0] for n in names})
            raise ValueError(f'feature pattern {pattern!r} matches no module '
                             f'of the student UNet (top-level modules: '
                             f'{tops})')
        out.extend(h for h in hits if h not in out)
    return out


def feature_pairs(features: Union[str, Sequence[str]], student: nn.Module,
                  teacher: nn.Module,
                  module_map: Dict[str, str]) -> List[Tuple[str, str]]:
    """``(student_module, teacher_module)`` pairs of a preset name or a list
    of student patterns; teacher partners follow from the module map."""
    rule = get_preset(features).last_down if isinstance(features, str) \
        else 'last_layer'
    return [
        _pair(s, teacher_name(s, module_map), student, teacher, rule)
        for s in expand_patterns(features, [n for n, _ in
                                            student.named_modules()])
    ]


def _pair(s: str, t: str, student: nn.Module, teacher: nn.Module,
          rule: str) -> Tuple[str, str]:
    s_mod, t_mod = student.get_submodule(s), teacher.get_submodule(t)
    if (getattr(t_mod, 'downsamplers', None) is None
            or getattr(s_mod, 'downsamplers', None) is not None):
        return s, t
    # A kept down stage that is the student's last and lost the
    # downsampler its teacher stage has.
    if rule == 'proj_out' and getattr(s_mod, 'attentions', None) \
            and getattr(t_mod, 'attentions', None):
        return (f'{s}.attentions.{len(s_mod.attentions) - 1}.proj_out',
                f'{t}.attentions.{len(t_mod.attentions) - 1}.proj_out')
    if rule == 'mirror_up':
        # Teacher down stage i+1 is removed; teacher up stage n-2-i mirrors
        # it and brings its output back to stage i's resolution.
        stage = int(t.split('.')[-1])
        return s, f'up_blocks.{len(teacher.down_blocks) - 2 - stage}'
    layers = 'attentions' if getattr(t_mod, 'attentions', None) \
        else 'resnets'
    return s, f'{t}.{layers}.{len(getattr(t_mod, layers)) - 1}'


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
