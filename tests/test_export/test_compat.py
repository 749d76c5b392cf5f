"""The adapter compatibility report on students with and without a mid
block, and a teacher LoRA transplanted onto a student."""
import json

import torch
from diffusers import UNet2DConditionModel
from peft.utils import get_peft_model_state_dict

from diffkd.export.compat import MID_HINT, transplant_lora
from diffkd.models.compression import build_compression, init_from_teacher
from diffkd.models.lora import add_lora
from tests.conftest import run_tool


def student(base, recipe, path, **kw):
    teacher = UNet2DConditionModel.from_pretrained(base, subfolder='unet')
    comp = build_compression(dict(type=recipe, **kw))(dict(teacher.config))
    unet = UNet2DConditionModel.from_config(comp.student_config)
    init_from_teacher(unet, teacher, comp.module_map)
    unet.save_pretrained(path)
    return str(path)


def test_student_without_mid_block(toy_sd15, tmp_path, capsys):
    folder = student(toy_sd15, 'BKSDMSmall', tmp_path / 'small')
    rows = {r['adapter']: r for r in run_tool(
        'analysis_tools/compat.py', [folder, '--json'])}
    assert json.loads(capsys.readouterr().out)  # the printed rows
    assert not rows['controlnet']['ok']
    assert 'mid_block_type' in rows['controlnet']['detail']
    assert MID_HINT in rows['controlnet']['detail']
    assert rows['ip_adapter']['ok'] and rows['lora']['ok']
    assert rows['single_file']['ok']
    assert 'no middle_block' in rows['single_file']['detail']


def test_student_with_light_mid_block(toy_sd15, toy_sdxl, tmp_path):
    # The hint's option: the same student with one resnet as mid block.
    for base, recipe, kw in ((toy_sd15, 'BKSDMSmall', dict(mid='resnet')),
                             (toy_sdxl, 'SSD1B', {})):
        folder = student(base, recipe, tmp_path / recipe, **kw)
        rows = {r['adapter']: r
                for r in run_tool('analysis_tools/compat.py', [folder])}
        assert all(r['ok'] for r in rows.values()), rows
        assert 'UNetMidBlock2D' in rows['controlnet']['detail']


def test_teacher_lora_transplants_onto_the_student(toy_sdxl):
    teacher = UNet2DConditionModel.from_pretrained(toy_sdxl,
                                                   subfolder='unet')
    comp = build_compression(dict(type='KOALA700M'))(dict(teacher.config))
    add_lora(teacher, rank=2)
    torch.manual_seed(0)
    for name, p in teacher.named_parameters():
        if 'lora_B' in name:
            p.data.normal_()
    teacher_lora = {f'unet.{k}': v
                    for k, v in get_peft_model_state_dict(teacher).items()}
    moved, dropped = transplant_lora(teacher_lora, comp.student_config,
                                     comp.module_map)
    # KOALA-700M drops the mid block and deeper transformer layers.
    assert any('mid_block' in k for k in dropped)
    assert not any('mid_block' in k for k in moved)

    target = UNet2DConditionModel.from_config(comp.student_config)
    target.load_lora_adapter(moved, prefix='unet', adapter_name='t')
    loaded = get_peft_model_state_dict(target, adapter_name='t')
    assert {f'unet.{k}' for k in loaded} == set(moved)  # nothing unexpected
    # A layer the student keeps carries the teacher's weights.
    key = 'unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.' \
        'to_q.lora_B.weight'
    torch.testing.assert_close(moved[key], teacher_lora[key])
    # KOALA keeps up layers 0 and 2: the teacher's third layer is the
    # student's second, renamed on the way.
    old = 'unet.up_blocks.0.attentions.2.transformer_blocks.0.attn1.' \
        'to_q.lora_B.weight'
    torch.testing.assert_close(moved[old.replace('attentions.2',
                                                 'attentions.1')],
                               teacher_lora[old])
    # Loaded as it is, the teacher's file would name modules the student
    # lacks, and put the removed layer 1's weights into the student's
    # layer 1 (the teacher's layer 2): the transplant drops layer 1.
    names = {n for n, _ in target.named_modules()}
    assert any(k[len('unet.'):].rsplit('.lora_', 1)[0] not in names
               for k in teacher_lora)
    assert old.replace('attentions.2', 'attentions.1') in dropped


def test_transplant_tool_output_loads_on_the_student_pipeline(
        toy_sdxl, tmp_path):
    from diffusers import DiffusionPipeline, StableDiffusionXLPipeline

    from diffkd.models.lora import save_lora
    teacher = UNet2DConditionModel.from_pretrained(toy_sdxl,
                                                   subfolder='unet')
    add_lora(teacher, rank=2, alpha=4)
    lora_dir = str(tmp_path / 'teacher_lora')
    save_lora(StableDiffusionXLPipeline, lora_dir, teacher, {})
    out = str(tmp_path / 'student_lora.safetensors')
    dropped = run_tool('transplant_lora.py', [
        lora_dir, '--teacher', toy_sdxl, '--compression', 'SSD1B',
        '--out', out])
    assert dropped  # SSD-1B cuts transformer depth
    comp = build_compression(dict(type='SSD1B'))(dict(teacher.config))
    pipe = DiffusionPipeline.from_pretrained(
        toy_sdxl, unet=UNet2DConditionModel.from_config(comp.student_config))
    pipe.load_lora_weights(out, adapter_name='moved')
    n_loaded = len(get_peft_model_state_dict(pipe.unet,
                                             adapter_name='moved'))
    from safetensors.torch import load_file
    assert n_loaded == len(load_file(out))
    # The adapter config travels with the file: alpha 4 scales as on the
    # teacher (without it diffusers would take alpha = rank).
    assert pipe.unet.peft_config['moved'].lora_alpha == 4
