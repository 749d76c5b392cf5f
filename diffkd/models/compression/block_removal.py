"""Block-removal compression: teacher UNet config -> student config + map.

A recipe says, per stage, which of the teacher's layers (resnet + attention
pairs) the student keeps, how deep each kept transformer stays, what happens
to the mid block, and which stages survive. From that one description come
both the student's standard diffusers ``UNet2DConditionModel`` config and the
teacher->student module map that initialises the student and pairs features
for distillation, so the two can never disagree.
"""
import copy
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union


MID_CHOICES = ('keep', 'remove', 'resnet')
Depth = Union[int, Sequence[int]]


@dataclass
class Compression:
    """A student config and where each of its modules comes from."""
    student_config: Dict
    # student module path -> teacher module path ('' is the UNet itself)
    module_map: Dict[str, str]


class IncompatibleTeacherError(ValueError):
    """The recipe was written for another teacher topology."""


def _per_stage(value, n: int, name: str) -> List:
    if isinstance(value, int):
        return [value] * n
    value = list(value)
    if len(value) != n:
        raise IncompatibleTeacherError(
            f'{name} has {len(value)} entries for {n} stages')
    return value


def _depths(stage_depth, num_layers: int) -> List[int]:
    """Transformer depth of each layer of a stage (int or per-layer list)."""
    if isinstance(stage_depth, int):
        return [stage_depth] * num_layers
    return list(stage_depth)


class BlockRemoval:
    """Generic block-removal recipe.

    Args:
        down_stages: teacher down stages the student keeps (default all);
            up stages mirror them.
        down_layers: per kept down stage, teacher layer indices kept.
        up_layers: per kept up stage (student order), teacher layer indices.
        mid: ``'keep'``, ``'remove'`` or ``'resnet'`` (one resnet, no
            attention: SSD-1B, Vega).
        down_depths / up_depths: transformer depth per kept down stage
            (int) and per kept up stage (list per layer); a depth ``d``
            keeps the teacher's first ``d`` transformer layers.
        teacher_stages / teacher_depths: the teacher topology the recipe was
            written for (checked, so an SDXL recipe refuses an SD teacher).
    """
    name = 'block_removal'

    def __init__(self,
                 down_stages: Optional[Sequence[int]] = None,
                 down_layers: Optional[Sequence[Sequence[int]]] = None,
                 up_layers: Optional[Sequence[Sequence[int]]] = None,
                 mid: str = 'keep',
                 down_depths: Optional[Sequence[int]] = None,
                 up_depths: Optional[Sequence[Sequence[int]]] = None,
                 teacher_stages: Optional[int] = None,
                 teacher_depths: Optional[Sequence[int]] = None):
        if mid not in MID_CHOICES:
            raise ValueError(f'mid must be one of {MID_CHOICES}, got {mid!r}')
        self.down_stages = down_stages
        self.down_layers = down_layers
        self.up_layers = up_layers
        self.mid = mid
        self.down_depths = down_depths
        self.up_depths = up_depths
        self.teacher_stages = teacher_stages
        self.teacher_depths = teacher_depths

    # ------------------------------------------------------------ checks
    def _check_teacher(self, t: Dict):
        n = len(t['down_block_types'])
        recipe = type(self).__name__
        if self.teacher_stages is not None and n != self.teacher_stages:
            raise IncompatibleTeacherError(
                f'{recipe} is written for a {self.teacher_stages}-stage '
                f'teacher UNet, but the teacher has {n} stages '
                f'({t["down_block_types"]}); use a recipe for this teacher')
        if self.teacher_depths is not None:
            got = [
                max(_depths(d, 1)) if 'CrossAttn' in bt else 0
                for d, bt in zip(
                    _per_stage(t.get('transformer_layers_per_block', 1), n,
                               'transformer_layers_per_block'),
                    t['down_block_types'])
            ]
            if got != list(self.teacher_depths):
                raise IncompatibleTeacherError(
                    f'{recipe} is written for a teacher with transformer '
                    f'depths {list(self.teacher_depths)} per stage, but the '
                    f'teacher has {got}')

    # ------------------------------------------------------------- build
    def __call__(self, teacher_config: Dict) -> Compression:
        t = copy.deepcopy(dict(teacher_config))
        self._check_teacher(t)
        n_t = len(t['down_block_types'])
        t_layers = _per_stage(t.get('layers_per_block', 2), n_t,
                              'layers_per_block')
        t_down_depth = _per_stage(t.get('transformer_layers_per_block', 1),
                                  n_t, 'transformer_layers_per_block')
        t_up_depth = t.get('reverse_transformer_layers_per_block') or list(
            reversed(t_down_depth))

        down_stages = list(self.down_stages if self.down_stages is not None
                           else range(n_t))
        n_s = len(down_stages)
        # Up stage j of the student mirrors its down stage n_s-1-j.
        up_stages = [n_t - 1 - s for s in reversed(down_stages)]
        down_layers = [list(x) for x in (self.down_layers or [
            range(t_layers[s]) for s in down_stages])]
        up_layers = [list(x) for x in (self.up_layers or [
            range(t_layers[n_t - 1 - u] + 1) for u in up_stages])]
        if len(down_layers) != n_s or len(up_layers) != n_s:
            raise ValueError(f'{type(self).__name__}: down_layers/up_layers '
                             f'need one entry per kept stage ({n_s})')
        for j, layers in enumerate(up_layers):
            # diffusers gives up stage j one layer more than down stage
            # n_s-1-j; a recipe must respect that to stay a standard UNet.
            if len(layers) != len(down_layers[n_s - 1 - j]) + 1:
                raise ValueError(
                    f'{type(self).__name__}: up stage {j} keeps '
                    f'{len(layers)} layers but diffusers needs '
                    f'{len(down_layers[n_s - 1 - j]) + 1}')

        module_map: Dict[str, str] = {'': ''}
        s_down_depth = [
            self._map_stage(module_map, 'down', i, ts, layers,
                            t['down_block_types'][ts],
                            _depths(t_down_depth[ts], t_layers[ts]),
                            [self.down_depths[i]] * len(layers)
                            if self.down_depths is not None else None,
                            has_sampler=i < n_s - 1,
                            teacher_has_sampler=ts < n_t - 1)
            for i, (ts, layers) in enumerate(zip(down_stages, down_layers))
        ]
        s_up_depth = [
            self._map_stage(module_map, 'up', j, tu, layers,
                            t['up_block_types'][tu],
                            _depths(t_up_depth[tu],
                                    t_layers[n_t - 1 - tu] + 1),
                            self.up_depths[j]
                            if self.up_depths is not None else None,
                            has_sampler=j < n_s - 1,
                            teacher_has_sampler=tu < n_t - 1)
            for j, (tu, layers) in enumerate(zip(up_stages, up_layers))
        ]

        mid_type = t.get('mid_block_type') or 'UNetMidBlock2DCrossAttn'
        if self.mid == 'remove':
            mid_type = None
        elif self.mid == 'resnet':
            mid_type = 'UNetMidBlock2D'
            module_map['mid_block'] = 'mid_block'
            module_map['mid_block.resnets.0'] = 'mid_block.resnets.0'
        else:
            module_map['mid_block'] = 'mid_block'
            t_mid = _depths(t_down_depth[-1], 1)[0]
            s_mid = _depths(s_down_depth[-1][0], 1)[0]
            for k in range(s_mid):
                module_map[f'mid_block.attentions.0.transformer_blocks.{k}'] \
                    = f'mid_block.attentions.0.transformer_blocks.{k}'
            if s_mid > t_mid:
                raise ValueError('the mid block cannot be deeper than the '
                                 "teacher's")

        return Compression(
            self._student_config(t, down_stages, down_layers, s_down_depth,
                                 s_up_depth, mid_type), module_map)

    def _map_stage(self, module_map, side, i, ti, layers, block_type,
                   t_depths, depths, has_sampler, teacher_has_sampler):
        """Map student stage ``i`` (kept ``layers`` of teacher stage ``ti``)
        and return the transformer depth of each student layer."""
        sp, tp = f'{side}_blocks.{i}', f'{side}_blocks.{ti}'
        module_map[sp] = tp
        stage = []
        for j, tj in enumerate(layers):
            module_map[f'{sp}.resnets.{j}'] = f'{tp}.resnets.{tj}'
            d = t_depths[tj] if depths is None else depths[j]
            if 'CrossAttn' in block_type:
                self._map_attention(module_map, f'{sp}.attentions.{j}',
                                    f'{tp}.attentions.{tj}', d, t_depths[tj])
            stage.append(d)
        sampler = f'{side}samplers'
        if has_sampler and teacher_has_sampler:
            module_map[f'{sp}.{sampler}'] = f'{tp}.{sampler}'
        elif has_sampler:
            raise IncompatibleTeacherError(
                f'student {side} stage {i} needs a {sampler[:-1]} that '
                f'teacher {side} stage {ti} does not have')
        return stage

    @staticmethod
    def _map_attention(module_map, sp, tp, depth, teacher_depth):
        if depth > teacher_depth:
            raise ValueError(f'{sp}: depth {depth} exceeds the teacher '
                             f"layer's {teacher_depth}")
        module_map[sp] = tp
        for k in range(depth):
            module_map[f'{sp}.transformer_blocks.{k}'] = \
                f'{tp}.transformer_blocks.{k}'

    @staticmethod
    def _student_config(t, down_stages, down_layers, s_down_depth,
                        s_up_depth, mid_type) -> Dict:
        # Private keys (``_use_default_values`` and the like) would make
        # diffusers ignore the values set here.
        s = {k: copy.deepcopy(v) for k, v in t.items() if not k.startswith('_')}
        n_t = len(t['down_block_types'])

        def pick(key):
            value = t.get(key)
            if isinstance(value, (list, tuple)) and len(value) == n_t:
                return [value[i] for i in down_stages]
            return value

        s['block_out_channels'] = pick('block_out_channels')
        s['down_block_types'] = pick('down_block_types')
        s['up_block_types'] = [
            t['up_block_types'][n_t - 1 - i] for i in reversed(down_stages)
        ]
        for key in ('attention_head_dim', 'num_attention_heads',
                    'only_cross_attention', 'cross_attention_dim'):
            if isinstance(t.get(key), (list, tuple)):
                s[key] = pick(key)
        counts = [len(x) for x in down_layers]
        s['layers_per_block'] = counts[0] if len(set(counts)) == 1 else counts

        def compact(stages):
            return [st[0] if len(set(st)) == 1 else st for st in stages]

        down = compact(s_down_depth)
        s['transformer_layers_per_block'] = down
        # diffusers mirrors the down depths for the up path unless told;
        # give the up depths explicitly whenever they differ from that.
        mirrored = [[d] * (len(up)) for d, up in zip(
            reversed([max(_depths(d, 1)) for d in down]), s_up_depth)]
        nested = any(isinstance(d, list) for d in down)
        if nested or mirrored != s_up_depth:
            s['reverse_transformer_layers_per_block'] = [
                list(st) for st in s_up_depth
            ]
        else:
            s.pop('reverse_transformer_layers_per_block', None)
        s['mid_block_type'] = mid_type
        return s
