"""A teacher ControlNet transplanted onto students through the recipe's
module map: strict load into ``ControlNetModel.from_unet(student)``, a
forward pass, the teacher's weights where a block is kept."""
import pytest
import torch
from diffusers import ControlNetModel, UNet2DConditionModel

from diffkd.export.compat import MID_HINT, _inputs
from diffkd.export.transplant import transplant_controlnet
from diffkd.models.compression import build_compression, init_from_teacher
from tests.conftest import run_tool


def teacher_controlnet(base):
    """The teacher UNet and a ControlNet made from it, its zero
    convolutions filled with distinct values so that moves show."""
    teacher = UNet2DConditionModel.from_pretrained(base, subfolder='unet')
    cn = ControlNetModel.from_unet(teacher)
    torch.manual_seed(0)
    for name, p in cn.named_parameters():
        if name.startswith('controlnet_'):
            p.data.normal_()
        else:  # trained away from the UNet it was made from
            p.data.add_(0.01 * torch.randn_like(p))
    return teacher, cn


def student_of(teacher, recipe):
    comp = build_compression(recipe)(dict(teacher.config))
    unet = UNet2DConditionModel.from_config(comp.student_config)
    init_from_teacher(unet, teacher, comp.module_map)
    return comp, unet.eval()


# (recipe, a kept tensor, (student residual, teacher residual) pairs,
# dropped teacher keys)
CASES = {
    'SSD1B': (  # every layer kept, transformers cut: residuals unchanged
        dict(type='SSD1B'),
        'down_blocks.2.attentions.1.transformer_blocks.3.ff.net.2.weight',
        [(i, i) for i in range(9)],
        ['down_blocks.2.attentions.0.transformer_blocks.4.attn1.to_q.weight',
         'mid_block.attentions.0.proj_in.weight']),
    'BKSDMBase': (  # second layer of each down block removed
        dict(type='BKSDMBase'),
        'down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.weight',
        [(0, 0), (1, 1), (2, 3), (3, 4), (4, 6), (5, 7), (6, 9), (7, 10)],
        ['controlnet_down_blocks.2.weight', 'controlnet_down_blocks.11.bias',
         'down_blocks.0.resnets.1.conv1.weight']),
}


@pytest.mark.parametrize('name', sorted(CASES))
def test_controlnet_transplant_loads_strictly_and_runs(name, toy_sdxl,
                                                       toy_sd15):
    recipe, kept, residuals, gone = CASES[name]
    teacher, cn = teacher_controlnet(toy_sdxl if name == 'SSD1B'
                                     else toy_sd15)
    comp, unet = student_of(teacher, recipe)
    t_state = cn.state_dict()
    state, dropped = transplant_controlnet(t_state, comp.student_config,
                                           comp.module_map)
    target = ControlNetModel.from_unet(unet)
    target.load_state_dict(state, strict=True)  # no missing, no unexpected
    assert torch.equal(target.state_dict()[kept], t_state[kept])
    for s, t in residuals:
        assert torch.equal(state[f'controlnet_down_blocks.{s}.weight'],
                           t_state[f'controlnet_down_blocks.{t}.weight'])
    assert len(target.controlnet_down_blocks) == len(residuals)
    assert torch.equal(state['controlnet_mid_block.weight'],
                       t_state['controlnet_mid_block.weight'])
    assert set(gone) <= set(dropped)
    assert not any(k.startswith('controlnet_') for k in dropped
                   if name == 'SSD1B')

    kw = _inputs(unet)
    size = kw['sample'].shape[-1]
    with torch.no_grad():
        down, mid = target(controlnet_cond=torch.randn(1, 3, 8 * size,
                                                       8 * size),
                           return_dict=False, **kw)
        out = unet(down_block_additional_residuals=down,
                   mid_block_additional_residual=mid, **kw).sample
        plain = unet(**kw).sample
    assert torch.isfinite(out).all()
    assert not torch.allclose(out, plain)  # the residuals reach the UNet


def test_student_without_mid_block_names_the_light_mid_option(toy_sd15):
    teacher, cn = teacher_controlnet(toy_sd15)
    comp = build_compression(dict(type='BKSDMSmall'))(dict(teacher.config))
    with pytest.raises(ValueError, match='no mid block') as err:
        transplant_controlnet(cn.state_dict(), comp.student_config,
                              comp.module_map)
    assert MID_HINT in str(err.value)


def test_transplant_controlnet_tool(toy_sd15, tmp_path):
    teacher, cn = teacher_controlnet(toy_sd15)
    cn.save_pretrained(tmp_path / 'cn')
    out = str(tmp_path / 'student_cn')
    dropped = run_tool('transplant_controlnet.py', [
        str(tmp_path / 'cn'), '--teacher', toy_sd15, '--compression',
        'BKSDMSmall', '--compression-args', '{"mid": "resnet"}',
        '--out', out])
    assert 'controlnet_down_blocks.2.weight' in dropped
    assert any('mid_block.attentions' in k for k in dropped)
    loaded = ControlNetModel.from_pretrained(out)
    _, unet = student_of(teacher, dict(type='BKSDMSmall', mid='resnet'))
    assert loaded.config.mid_block_type == 'UNetMidBlock2D'
    assert loaded.state_dict().keys() == \
        ControlNetModel.from_unet(unet).state_dict().keys()
    with pytest.raises(SystemExit, match='mid_block_type None'):
        run_tool('transplant_controlnet.py', [
            str(tmp_path / 'cn'), '--teacher', toy_sd15, '--compression',
            'BKSDMSmall', '--out', str(tmp_path / 'no')])
