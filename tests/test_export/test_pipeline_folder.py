"""final/ as a complete pipeline folder with a Hub model card; the same
folder from tools/export_pipeline.py and, listed, from
tools/push_to_hub.py --dry-run."""
import json
import os
import os.path as osp
import shutil

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionXLPipeline
from huggingface_hub import ModelCard

from diffkd.apis import load_pipeline
from tests.conftest import run_tool


def sample(pipe):
    gen = torch.Generator().manual_seed(0)
    return pipe('a red circle', generator=gen, num_inference_steps=2,
                guidance_scale=1.0, output_type='pt').images


def test_final_loads_offline_as_a_pipeline(ssd1b_run, toy_sdxl):
    final = osp.join(ssd1b_run, 'final')
    pipe = DiffusionPipeline.from_pretrained(final)
    assert isinstance(pipe, StableDiffusionXLPipeline)
    assert pipe.unet.config.mid_block_type == 'UNetMidBlock2D'
    # The trained UNet is the student; the rest is the base pipeline's,
    # hard-linked (same file, no second copy on disk).
    base_vae = osp.join(toy_sdxl, 'vae', 'diffusion_pytorch_model.safetensors')
    mine = osp.join(final, 'vae', 'diffusion_pytorch_model.safetensors')
    assert os.stat(mine).st_ino == os.stat(base_vae).st_ino
    info = json.load(open(osp.join(final, 'export_info.json')))
    assert info['component_origin']['unet'] == 'trained'
    assert info['component_origin']['text_encoder_2'] == 'base'
    # tools/infer.py's loader gives the same images.
    torch.testing.assert_close(sample(pipe), sample(load_pipeline(ssd1b_run)))


def test_model_card_metadata_parses(ssd1b_run, toy_sdxl):
    card = ModelCard.load(osp.join(ssd1b_run, 'final', 'README.md'))
    assert card.data.base_model == toy_sdxl  # the teacher
    assert card.data.library_name == 'diffusers'
    assert {'knowledge-distillation', 'ssd1b',
            'stable-diffusion-xl'} <= set(card.data.tags)
    info = json.load(open(osp.join(ssd1b_run, 'final', 'export_info.json')))
    p = info['params']
    assert p['student'] < p['teacher']
    assert f'{p["teacher"] / 1e6:.1f}M -> {p["student"] / 1e6:.1f}M' \
        in card.text
    assert '| iterations | 3 |' in card.text
    assert 'HFImageTextDataset' in card.text
    assert 'StableDiffusionXLPipeline.from_pretrained' in card.text


def test_export_pipeline_lists_test_metrics(ssd1b_run, tmp_path):
    # What tools/test.py leaves in the work dir.
    test_dir = osp.join(ssd1b_run, '20990101_000000', 'test')
    os.makedirs(test_dir)
    with open(osp.join(test_dir, 'metrics.json'), 'w') as f:
        json.dump({'toy/prompt_score': 0.8125}, f)
    try:
        out = str(tmp_path / 'toy-ssd-1b')
        run_tool('export_pipeline.py', [ssd1b_run, out])
    finally:
        shutil.rmtree(osp.dirname(test_dir))
    card = ModelCard.load(osp.join(out, 'README.md'))
    assert '| toy/prompt_score | 0.8125 |' in card.text
    pipe = DiffusionPipeline.from_pretrained(out)
    torch.testing.assert_close(
        sample(pipe), sample(DiffusionPipeline.from_pretrained(
            osp.join(ssd1b_run, 'final'))))
    with pytest.raises(SystemExit, match='exists'):
        run_tool('export_pipeline.py', [ssd1b_run, out])


def test_push_to_hub_dry_run_lists_the_folder(ssd1b_run, capsys):
    plan = run_tool('push_to_hub.py',
                    [ssd1b_run, 'me/toy-ssd-1b', '--dry-run'])
    files = {rel for rel, _ in plan}
    assert {'model_index.json', 'README.md',
            'unet/diffusion_pytorch_model.safetensors',
            'text_encoder_2/config.json',
            'scheduler/scheduler_config.json'} <= files
    out = capsys.readouterr().out
    assert 'would upload' in out and 'me/toy-ssd-1b' in out
    # The card's snippet loads from the repo it goes to.
    assert "from_pretrained('me/toy-ssd-1b'" in out
    # The Hub takes only hub ids as base_model: the toy's local teacher
    # folder stays in the body.
    assert 'base_model:' not in out and 'library_name: diffusers' in out


def test_unreachable_base_keeps_the_trained_parts(ssd1b_run, tmp_path):
    import shutil as sh

    from diffkd.engine.hooks.export_hook import _finish
    tmp = str(tmp_path / 'export')
    sh.copytree(osp.join(ssd1b_run, 'final', 'unet'), osp.join(tmp, 'unet'))
    info = json.load(open(osp.join(ssd1b_run, 'final', 'export_info.json')))
    info['base_model'] = str(tmp_path / 'gone')
    with open(osp.join(tmp, 'export_info.json'), 'w') as f:
        json.dump(info, f)
    _finish(tmp, tmp, None)  # warns, does not raise
    assert sorted(os.listdir(tmp)) == ['export_info.json', 'unet']
