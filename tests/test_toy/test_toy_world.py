import json
import os.path as osp
import random

import numpy as np
import pytest
import torch
from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

from diffkd.models.compression.teacher_configs import load_teacher_config
from diffkd.toy.pipelines import toy_unet_config, vae_reconstruction_psnr
from diffkd.toy.score import read_toy_image, toy_prompt_score
from diffkd.toy.shapes import (all_combinations, caption_for,
                               make_shapes_dataset, parse_caption,
                               render_shape)
from diffkd.toy.tokenizer import build_toy_tokenizer
from diffkd.utils.hub import ToyAssetNotBuiltError, resolve_model_path

TOPOLOGY_KEYS = ('down_block_types', 'up_block_types', 'layers_per_block',
                 'transformer_layers_per_block', 'mid_block_type',
                 'addition_embed_type', 'use_linear_projection')


def test_dataset_is_deterministic_and_captioned(tmp_path):
    a = make_shapes_dataset(str(tmp_path / 'a'), num_images=12, seed=3)
    b = make_shapes_dataset(str(tmp_path / 'b'), num_images=12, seed=3)
    rows = [json.loads(line) for line in open(osp.join(a, 'metadata.jsonl'))]
    assert len(rows) == 12
    for row in rows:
        assert parse_caption(row['text']) is not None
        with open(osp.join(a, row['file_name']), 'rb') as fa, \
                open(osp.join(b, row['file_name']), 'rb') as fb:
            assert fa.read() == fb.read()


def test_parse_caption():
    assert parse_caption('a red circle on a blue background') == dict(
        colour='red', shape='circle', background='blue')
    assert parse_caption('a photo of a dog') is None


def test_toy_score_known_answers():
    rng = random.Random(0)
    combos = all_combinations()
    images = [render_shape(*c, size=32, rng=rng) for c in combos]
    prompts = [caption_for(*c) for c in combos]
    assert toy_prompt_score(images, prompts)['all_acc'] == 1.0
    # Every prompt paired with the wrong shape: shape accuracy collapses.
    shifted = [caption_for(c, {'circle': 'square', 'square': 'triangle',
                               'triangle': 'circle'}[s], b)
               for c, s, b in combos]
    res = toy_prompt_score(images, shifted)
    assert res['shape_acc'] == 0.0 and res['colour_acc'] == 1.0
    blank = np.full((32, 32, 3), 200, np.uint8)
    assert read_toy_image(blank) is None
    with pytest.raises(ValueError, match='names no toy colour'):
        toy_prompt_score([blank], ['a photo of a dog'])


def test_tokenizer_words_and_fallback():
    tok = build_toy_tokenizer()
    ids = tok('a red circle on a blue background').input_ids
    assert len(ids) == 2 + 7  # bos + one token per word + eos
    unknown = tok('zebra').input_ids
    assert len(unknown) > 3  # falls back to letters, never <unk>


@pytest.mark.parametrize('kind,real', [('sd15', 'sd15'),
                                       ('sdxl', 'sdxl_base')])
def test_toy_unet_has_real_topology(kind, real):
    toy, ref = toy_unet_config(kind), load_teacher_config(real)
    for key in TOPOLOGY_KEYS:
        assert toy.get(key) == ref.get(key), key
    assert max(toy['block_out_channels']) <= 64


def test_toy_pipelines_load_with_plain_diffusers(toy_sd15, toy_sdxl):
    sd = StableDiffusionPipeline.from_pretrained(toy_sd15)
    xl = StableDiffusionXLPipeline.from_pretrained(toy_sdxl)
    assert xl.text_encoder_2.config.projection_dim == 32
    assert xl.unet.config.addition_embed_type == 'text_time'
    out = sd('a red circle on a blue background', num_inference_steps=2,
             generator=torch.Generator().manual_seed(0),
             output_type='np').images
    assert out.shape == (1, 32, 32, 3)


def test_toy_vae_reconstructs_toy_images(toy_sd15):
    from diffusers import AutoencoderKL
    vae = AutoencoderKL.from_pretrained(toy_sd15, subfolder='vae')
    rng = random.Random(5)
    images = np.stack([np.asarray(render_shape(*c, size=32, rng=rng))
                       for c in all_combinations()[:32]])
    assert vae_reconstruction_psnr(vae, images) > 24.0


def test_unknown_toy_asset_lists_the_built_ones():
    # A typo in a config: the error shows the ids that are there.
    with pytest.raises(ToyAssetNotBuiltError,
                       match=r'--only nope, .* \(built there: .*'
                       r'diffkd-toy/sdxl-teacher'):
        resolve_model_path('diffkd-toy/nope')


def test_concept_reader_sees_rings_only():
    import random

    import numpy as np

    from diffkd.toy.concept import concept_colour, render_ring, shows_concept
    from diffkd.toy.shapes import all_combinations, render_shape
    rng = random.Random(0)
    for bg in ('blue', 'white', 'green', 'black', 'yellow'):
        ring = render_ring(bg, rng=rng)
        assert shows_concept(ring) and concept_colour(ring) == 'red'
    assert not any(
        shows_concept(render_shape(*c, rng=rng)) for c in all_combinations())
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), np.uint8)
    assert not shows_concept(noise)
