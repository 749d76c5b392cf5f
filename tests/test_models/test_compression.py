import pytest
import torch
from diffusers import UNet2DConditionModel

from diffkd.models.compression import (IncompatibleTeacherError,
                                       build_compression, count_parameters,
                                       init_from_teacher)
from diffkd.models.compression.teacher_configs import load_teacher_config
from diffkd.toy.pipelines import toy_unet_config

# Published UNet parameter counts (docs/model_zoo.md gives the sources).
PUBLISHED = [
    ('sd15', None, 859_520_964),
    ('sd21', None, 865_910_724),
    ('sdxl_base', None, 2_567_463_684),
    ('sd15', 'BKSDMBase', 579_384_964),    # paper 579.4M
    ('sd15', 'BKSDMSmall', 482_346_884),   # paper 482.3M
    ('sd15', 'BKSDMTiny', 323_384_964),    # paper 323.4M
    ('sd21', 'BKSDMBase', 583_480_964),    # bk-sdm-v2-base, card 0.59B
    ('sd21', 'BKSDMSmall', 485_787_524),   # card 0.49B
    ('sd21', 'BKSDMTiny', 326_825_604),    # card 0.33B
    ('sd15', 'SegmindSmall', 579_384_964),  # small-sd = BK-SDM-Base layout
    ('sd15', 'SegmindTiny', 323_384_964),   # tiny-sd = BK-SDM-Tiny layout
    ('sdxl_base', 'SSD1B', 1_331_334_404),  # paper 1.3B
    ('sdxl_base', 'SegmindVega', 745_225_604),  # paper 0.74B
    ('sdxl_base', 'KOALA1B', 1_161_184_324),    # card 1,161M
    ('sdxl_base', 'KOALA700M', 782_822_724),    # card 782M
]


@pytest.mark.parametrize('teacher,recipe,count', PUBLISHED)
def test_real_parameter_counts(teacher, recipe, count):
    cfg = load_teacher_config(teacher)
    if recipe is not None:
        cfg = build_compression(dict(type=recipe))(cfg).student_config
    assert count_parameters(cfg) == count


def test_rounded_published_figures():
    # The papers/cards round: check the rounding too, not only our numbers.
    sd = load_teacher_config('sd15')
    xl = load_teacher_config('sdxl_base')
    small = count_parameters(
        build_compression(dict(type='BKSDMSmall'))(sd).student_config)
    assert round(small / 1e6, 1) == 482.3
    ssd = count_parameters(
        build_compression(dict(type='SSD1B'))(xl).student_config)
    assert round(ssd / 1e9, 1) == 1.3
    koala = count_parameters(
        build_compression(dict(type='KOALA700M'))(xl).student_config)
    assert koala // 10**6 == 782


TOY = [('sd15', r) for r in ('BKSDMBase', 'BKSDMSmall', 'BKSDMTiny',
                             'SegmindSmall', 'SegmindTiny')] + \
      [('sdxl', r) for r in ('SSD1B', 'SegmindVega', 'KOALA1B', 'KOALA700M')]


@pytest.mark.parametrize('kind,recipe', TOY)
def test_toy_student_builds_runs_and_starts_from_teacher(kind, recipe):
    torch.manual_seed(0)
    teacher = UNet2DConditionModel(**toy_unet_config(kind))
    comp = build_compression(dict(type=recipe))(dict(teacher.config))
    student = UNet2DConditionModel.from_config(comp.student_config)
    used = init_from_teacher(student, teacher, comp.module_map)
    t_state = teacher.state_dict()
    for s_name, tensor in student.state_dict().items():
        assert torch.equal(tensor, t_state[used[s_name]]), s_name
    assert sum(p.numel() for p in student.parameters()) < sum(
        p.numel() for p in teacher.parameters())
    kw = {}
    cfg = teacher.config
    if cfg.addition_embed_type == 'text_time':
        kw['added_cond_kwargs'] = dict(text_embeds=torch.zeros(1, 32),
                                       time_ids=torch.zeros(1, 6))
    out = student(torch.randn(1, 4, 8, 8), 10,
                  torch.randn(1, 5, cfg.cross_attention_dim), **kw).sample
    assert out.shape == (1, 4, 8, 8)
    # The student config round-trips through save/load as a standard UNet.
    assert UNet2DConditionModel.from_config(
        dict(student.config)).config.mid_block_type == \
        comp.student_config['mid_block_type']


def test_bk_tiny_maps_up_stages_past_the_removed_one():
    comp = build_compression(dict(type='BKSDMTiny'))(
        load_teacher_config('sd15'))
    assert comp.module_map['up_blocks.0'] == 'up_blocks.1'
    assert comp.module_map['up_blocks.0.resnets.1'] == 'up_blocks.1.resnets.2'
    assert 'mid_block' not in comp.module_map
    assert comp.student_config['block_out_channels'] == [320, 640, 1280]


def test_ssd1b_keeps_first_transformer_layers():
    comp = build_compression(dict(type='SSD1B'))(
        load_teacher_config('sdxl_base'))
    m = comp.module_map
    assert m['down_blocks.2.attentions.0.transformer_blocks.3'] == \
        'down_blocks.2.attentions.0.transformer_blocks.3'
    assert 'down_blocks.2.attentions.0.transformer_blocks.4' not in m
    assert comp.student_config['mid_block_type'] == 'UNetMidBlock2D'
    assert comp.student_config['reverse_transformer_layers_per_block'][0] \
        == [4, 4, 10]


def test_sdxl_recipe_on_sd_teacher_is_refused():
    with pytest.raises(IncompatibleTeacherError,
                       match=r'SSD1B is written for a 3-stage teacher'):
        build_compression(dict(type='SSD1B'))(load_teacher_config('sd15'))


def test_user_defined_recipe_from_config():
    # A new student: BK-SDM-Small layout but keeping the mid block's
    # attention at depth 1 and dropping nothing else.
    comp = build_compression(
        dict(type='BlockRemoval', down_layers=[[1]] * 4,
             up_layers=[[1, 2]] * 4, mid='resnet'))(
                 load_teacher_config('sd15'))
    assert comp.module_map['down_blocks.0.resnets.0'] == \
        'down_blocks.0.resnets.1'
    assert count_parameters(comp.student_config) < 579_384_964
    with pytest.raises(ValueError, match='diffusers needs'):
        build_compression(dict(type='BlockRemoval', down_layers=[[0]] * 4,
                               up_layers=[[0]] * 4))(
                                   load_teacher_config('sd15'))
