"""Golden pair lists: each named feature preset, on the published teacher
architecture and recipe, gives exactly the pairs of its source code.

Sources (transcribed into diffusers module names):
- BK-SDM: Nota-NetsPresso/BK-SDM, src/kd_train_text_to_image.py,
  ``mapping_layers_tea`` / ``mapping_layers_stu``.
- distill-sd: segmind/distill-sd, distill_training.py, ``cast_hook`` and the
  ``loss_features`` sums (d = down_blocks, m = mid_block, u = up_blocks).
- SSD-1B: segmind/SSD-1B, distill_sdxl.py at commit 3bf633b, ``cast_hook``
  with ``level='sub_block'`` and the ``loss_features`` sums; its student's
  ``mid_block.resnet`` is diffusers' ``mid_block`` holding one resnet.
"""
import pytest
import torch
from diffusers import UNet2DConditionModel

from diffkd.models.compression import build_compression
from diffkd.models.compression.teacher_configs import load_teacher_config
from diffkd.models.distill import FEATURE_PRESETS, feature_pairs


def same(names):
    return [(n, n) for n in names]


BK_BASE = same(['up_blocks.0', 'up_blocks.1', 'up_blocks.2', 'up_blocks.3',
                'down_blocks.0', 'down_blocks.1', 'down_blocks.2',
                'down_blocks.3'])
BK_TINY = list(zip(
    ['down_blocks.0', 'down_blocks.1', 'down_blocks.2.attentions.0.proj_out',
     'up_blocks.0', 'up_blocks.1', 'up_blocks.2'],
    ['down_blocks.0', 'down_blocks.1', 'down_blocks.2.attentions.1.proj_out',
     'up_blocks.1', 'up_blocks.2', 'up_blocks.3']))
DSD_SMALL = same([f'down_blocks.{i}' for i in range(4)] + ['mid_block'] +
                 [f'up_blocks.{i}' for i in range(4)])
DSD_TINY = (same(['down_blocks.0', 'down_blocks.1']) +
            [('down_blocks.2', 'up_blocks.0')] +
            [(f'up_blocks.{i}', f'up_blocks.{i + 1}') for i in range(3)])
SSD_1B = same(
    [f'down_blocks.0.resnets.{j}' for j in range(2)] +
    [f'down_blocks.{i}.{kind}.{j}' for i in (1, 2) for j in range(2)
     for kind in ('resnets', 'attentions')] +
    [f'up_blocks.{i}.resnets.{j}' for i in range(3) for j in range(3)] +
    [f'up_blocks.{i}.attentions.{j}' for i in range(2) for j in range(3)]
) + [('mid_block', 'mid_block')]

GOLDEN = [
    ('sd15', 'BKSDMBase', 'bk_sdm', BK_BASE),
    ('sd15', 'BKSDMSmall', 'bk_sdm', BK_BASE),
    ('sd15', 'BKSDMTiny', 'bk_sdm', BK_TINY),
    ('sd21', 'BKSDMSmall', 'bk_sdm', BK_BASE),  # BK-SDM-v2, same script
    ('sd21', 'BKSDMTiny', 'bk_sdm', BK_TINY),
    ('sd15', 'SegmindSmall', 'distill_sd', DSD_SMALL),
    ('sd15', 'SegmindTiny', 'distill_sd', DSD_TINY),
    ('sdxl_base', 'SSD1B', 'layers', SSD_1B),
]


def meta_unets(arch, recipe):
    t_cfg = load_teacher_config(arch)
    result = build_compression(dict(type=recipe))(t_cfg)
    with torch.device('meta'):
        teacher = UNet2DConditionModel.from_config(t_cfg)
        student = UNet2DConditionModel.from_config(result.student_config)
    return student, teacher, result.module_map


@pytest.mark.parametrize('arch,recipe,preset,golden', GOLDEN,
                         ids=[f'{r}-{p}-{a}' for a, r, p, _ in GOLDEN])
def test_preset_reproduces_its_source(arch, recipe, preset, golden):
    pairs = feature_pairs(preset, *meta_unets(arch, recipe))
    assert len(pairs) == len(set(pairs))
    assert sorted(pairs) == sorted(golden)


def test_every_preset_names_its_source():
    for name, preset in FEATURE_PRESETS.items():
        assert preset.source, name
    assert FEATURE_PRESETS['blocks'] is FEATURE_PRESETS['distill_sd']


def test_plain_patterns_pair_a_tiny_stage_before_the_downsampler():
    """Patterns (no preset) pair a last stage that lost its downsampler
    with the teacher stage's last layer, before it downsamples."""
    pairs = feature_pairs(['down_blocks.*'], *meta_unets('sd15', 'BKSDMTiny'))
    assert pairs == [('down_blocks.0', 'down_blocks.0'),
                     ('down_blocks.1', 'down_blocks.1'),
                     ('down_blocks.2', 'down_blocks.2.attentions.1')]


def test_distill_sd_mid_block_is_optional_but_other_patterns_are_not():
    student, teacher, module_map = meta_unets('sd15', 'SegmindTiny')
    assert student.mid_block is None
    feature_pairs('distill_sd', student, teacher, module_map)  # no error
    with pytest.raises(ValueError, match="'mid_block' matches no module"):
        feature_pairs(['mid_block'], student, teacher, module_map)
