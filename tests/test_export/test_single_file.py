"""Single-file (LDM/SGM layout) checkpoints: diffusers' from_single_file
gives the pipeline folder's outputs back; the keys are those the original
UNet layout, and hence ComfyUI's detection, expects."""
import os.path as osp
import re

import pytest
import torch
from diffusers import (DiffusionPipeline, StableDiffusionPipeline,
                       StableDiffusionXLPipeline, UNet2DConditionModel)
from safetensors.torch import load_file

from diffkd.export.single_file import (SingleFileError, UNET_PREFIX,
                                       unet_to_ldm)
from diffkd.models.compression import build_compression, init_from_teacher
from tests.conftest import run_tool


def sample(pipe):
    gen = torch.Generator().manual_seed(0)
    return pipe('a red circle', generator=gen, num_inference_steps=2,
                guidance_scale=1.0, output_type='pt').images


def assert_same_pipeline(single, folder_pipe):
    """Every weight equal; images equal up to float rounding (the text
    encoders built by from_single_file use transformers' default attention
    kernel, from_pretrained picks SDPA: differences of 1e-7 to 1e-5 after
    the sampling steps)."""
    for name, module in folder_pipe.components.items():
        if not isinstance(module, torch.nn.Module):
            continue
        mine, theirs = module.state_dict(), getattr(single, name).state_dict()
        assert set(mine) == set(theirs), name
        for key in mine:
            assert torch.equal(mine[key], theirs[key]), f'{name}.{key}'
    torch.testing.assert_close(sample(single), sample(folder_pipe),
                               atol=1e-4, rtol=0)


def student_pipeline(base, recipe, out):
    """A toy student pipeline folder (recipe applied, teacher weights)."""
    pipe = DiffusionPipeline.from_pretrained(base)
    comp = build_compression(dict(type=recipe))(dict(pipe.unet.config))
    unet = UNet2DConditionModel.from_config(comp.student_config)
    init_from_teacher(unet, pipe.unet, comp.module_map)
    pipe.unet = unet
    pipe.register_to_config(unet=('diffusers', 'UNet2DConditionModel'))
    pipe.save_pretrained(out)
    return out


def test_sd15_student_without_mid_block_round_trips(toy_sd15, tmp_path):
    folder = student_pipeline(toy_sd15, 'BKSDMSmall', str(tmp_path / 'bk'))
    out = str(tmp_path / 'bk.safetensors')
    run_tool('export_single_file.py', [folder, '--out', out])
    keys = load_file(out)
    assert not any(k.startswith(UNET_PREFIX + 'middle_block') for k in keys)
    assert 'cond_stage_model.transformer.text_model.embeddings.' \
        'position_embedding.weight' in keys
    assert 'first_stage_model.encoder.mid.attn_1.q.weight' in keys
    single = StableDiffusionPipeline.from_single_file(
        out, config=folder, safety_checker=None,
        requires_safety_checker=False)
    assert_same_pipeline(single, DiffusionPipeline.from_pretrained(folder))


def test_sdxl_distilled_student_round_trips(ssd1b_run, tmp_path):
    out = str(tmp_path / 'ssd1b.safetensors')
    run_tool('export_single_file.py', [ssd1b_run, '--out', out])
    final = osp.join(ssd1b_run, 'final')
    keys = load_file(out)
    assert 'conditioner.embedders.1.model.transformer.resblocks.0.attn.' \
        'in_proj_weight' in keys
    # diffusers tells SDXL's two text encoders apart by width; the toy's
    # are equally wide (32), so text_encoder_2 is read here with diffusers'
    # OpenCLIP converter itself (real SDXL: 768 vs 1280, no ambiguity).
    from diffusers.loaders.single_file_utils import \
        convert_open_clip_checkpoint
    from transformers import CLIPTextModelWithProjection
    te2 = CLIPTextModelWithProjection.from_pretrained(
        final, subfolder='text_encoder_2')
    missing = te2.load_state_dict(convert_open_clip_checkpoint(
        te2, keys, prefix='conditioner.embedders.1.model.'), strict=True)
    assert not missing.missing_keys and not missing.unexpected_keys
    single = StableDiffusionXLPipeline.from_single_file(
        out, config=final, text_encoder_2=te2)
    assert_same_pipeline(single, DiffusionPipeline.from_pretrained(final))


def _depths(keys, prefix):
    """Transformer depth per input/output block read off the keys, the
    way key-based UNet detection (ComfyUI's) reads them."""
    found = {}
    for k in keys:
        m = re.match(rf'{prefix}\.(\d+)\.1\.transformer_blocks\.(\d+)\.', k)
        if m:
            i, d = int(m.group(1)), int(m.group(2)) + 1
            found[i] = max(found.get(i, 0), d)
    return found


@pytest.mark.parametrize('recipe,depth,middle', [
    ('SSD1B', [0, 0, 2, 2, 4, 4], None),
    ('SegmindVega', [0, 0, 1, 1, 2, 2], None),
    ('KOALA700M', [0, 2, 5], None)])
def test_real_size_students_have_the_keys_comfyui_detects(recipe, depth,
                                                          middle):
    # ComfyUI's supported_models matches SSD1B / Segmind_Vega / KOALA_700M
    # on model_channels, context_dim, adm_in_channels and the transformer
    # depth of each input block with a resnet (comfy/model_detection.py).
    from diffkd.models.compression.teacher_configs import load_teacher_config
    teacher = load_teacher_config('sdxl_base')
    cfg = build_compression(dict(type=recipe))(teacher).student_config
    with torch.device('meta'):
        unet = UNet2DConditionModel.from_config(cfg)
    keys = unet_to_ldm(unet.state_dict(), cfg)
    res = sorted(int(m.group(1)) for k in keys for m in
                 [re.match(r'input_blocks\.(\d+)\.0\.in_layers\.0\.weight$',
                           k)] if m)
    depths = _depths(keys, 'input_blocks')
    assert [depths.get(i, 0) for i in res] == depth
    assert keys['input_blocks.0.0.weight'].shape[0] == 320
    assert keys['label_emb.0.0.weight'].shape[1] == 2816
    first = min(i for i in res if depths.get(i))
    assert keys[f'input_blocks.{first}.1.transformer_blocks.0.attn2.to_k.'
                'weight'].shape[1] == 2048
    assert keys[f'input_blocks.{first}.1.proj_in.weight'].ndim == 2
    # SSD-1B / Vega keep one resnet as mid block (ComfyUI: depth -1),
    # KOALA-700M none (-2).
    mid = 'middle_block.0.in_layers.0.weight' in keys
    assert mid == (recipe != 'KOALA700M')
    assert 'middle_block.1.proj_in.weight' not in keys


def test_unequal_layers_per_stage_are_refused():
    cfg = dict(layers_per_block=[1, 2])
    with pytest.raises(SingleFileError, match=r'layers_per_block=\[1, 2\]'):
        unet_to_ldm({}, cfg)
