"""DreamBooth data: instance/class rows along the batch axis, class images
generated once and reused."""
import json
import os
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from diffkd.datasets import (DataError, DreamBoothDataset, dreambooth_collate,
                             generate_class_images)
from diffkd.datasets import dreambooth as db
from diffkd.registry import MODELS
from diffkd.toy.shapes import render_shape
from diffkd.utils.hub import resolve_model_path

PIPELINE = [
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text']),
]


@pytest.fixture
def class_dir(tmp_path):
    folder = tmp_path / 'class'
    folder.mkdir()
    for i, colour in enumerate(['green', 'blue', 'yellow']):
        render_shape(colour, 'circle', 'white').save(folder / f'c{i}.png')
    return str(folder)


def build(**kwargs):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return DreamBoothDataset(**kwargs)


def test_instance_and_class_rows_are_stacked_along_the_batch_axis(class_dir):
    ds = build(instance_data='diffkd-toy/sks-circle',
               instance_prompt='a sks circle', class_prompt='a circle',
               class_data_dir=class_dir, num_class_images=3,
               pipeline=PIPELINE)
    assert len(ds) == 5  # five instance photos, three class images
    batch = dreambooth_collate([ds[0], ds[1], ds[2]])
    inputs = batch['inputs']
    assert inputs['img'].shape == (6, 3, 32, 32)
    assert inputs['text'] == ['a sks circle'] * 3 + ['a circle'] * 3
    assert inputs['is_prior'].tolist() == [False] * 3 + [True] * 3
    # Rows 0-2 are the instance photos, rows 3-5 the class images.
    folder = resolve_model_path('diffkd-toy/sks-circle')
    first = np.asarray(db.read_image(osp.join(folder, 'sks_00.png'), ''))
    expect = torch.from_numpy(first.transpose(2, 0, 1) / 127.5 - 1.0)
    torch.testing.assert_close(inputs['img'][0].double(), expect)
    green = np.asarray(render_shape('green', 'circle', 'white'))
    torch.testing.assert_close(
        inputs['img'][3].double(),
        torch.from_numpy(green.transpose(2, 0, 1) / 127.5 - 1.0))


def test_without_class_prompt_batches_are_plain(class_dir):
    ds = build(instance_data='diffkd-toy/sks-circle',
               instance_prompt='a sks circle', pipeline=PIPELINE)
    batch = dreambooth_collate([ds[0], ds[1]])
    assert batch['inputs']['img'].shape[0] == 2
    assert 'is_prior' not in batch['inputs']


def test_class_images_are_generated_once_and_reused(tmp_path, toy_sd15,
                                                    monkeypatch):
    folder = str(tmp_path / 'generated')
    generation = dict(model=toy_sd15, num_inference_steps=1, batch_size=2)
    calls = []
    real = db._generation_pipeline

    def counting(*args):
        calls.append(args)
        return real(*args)

    monkeypatch.setattr(db, '_generation_pipeline', counting)
    ds = build(instance_data='diffkd-toy/sks-circle',
               instance_prompt='a sks circle', class_prompt='a circle',
               class_data_dir=folder, num_class_images=3,
               class_image_generation=generation, pipeline=PIPELINE)
    assert len(ds.class_images) == 3 and len(calls) == 1
    with open(osp.join(folder, 'class_images.json')) as f:
        assert json.load(f)['prompt'] == 'a circle'
    stamps = {p: os.stat(p).st_mtime_ns for p in ds.class_images}
    # Second run: nothing generated, same files.
    ds2 = build(instance_data='diffkd-toy/sks-circle',
                instance_prompt='a sks circle', class_prompt='a circle',
                class_data_dir=folder, num_class_images=3,
                class_image_generation=generation, pipeline=PIPELINE)
    assert len(calls) == 1
    assert {p: os.stat(p).st_mtime_ns for p in ds2.class_images} == stamps
    # One image lost: only that one is made again, from the same seed.
    # (Batched and single sampling differ only by float rounding.)
    lost = ds.class_images[1]
    before = np.asarray(db.read_image(lost, lost), dtype=np.int16)
    os.remove(lost)
    generate_class_images(folder, 'a circle', 3, **generation)
    assert len(calls) == 2
    after = np.asarray(db.read_image(lost, lost), dtype=np.int16)
    assert np.abs(after - before).max() <= 2
    # A different class prompt never mixes into this folder.
    with pytest.raises(DataError, match='class_images.json'):
        generate_class_images(folder, 'a square', 4, **generation)


def test_too_few_class_images_without_a_generator(class_dir):
    with pytest.raises(DataError, match='3 class images.*10 are needed'):
        build(instance_data='diffkd-toy/sks-circle',
              instance_prompt='a sks circle', class_prompt='a circle',
              class_data_dir=class_dir, num_class_images=10,
              pipeline=PIPELINE)


def test_empty_instance_folder_names_it(tmp_path):
    with pytest.raises(DataError, match='has no images'):
        build(instance_data=str(tmp_path), instance_prompt='a sks dog')


def test_prior_loss_splits_rows_with_their_prompts_and_timesteps(
        toy_sdxl, class_dir):
    with DefaultScope.overwrite_default_scope('diffkd'):
        model = MODELS.build(
            dict(type='StableDiffusionXL', model=toy_sdxl,
                 prior_loss_weight=0.3))
    ds = build(instance_data='diffkd-toy/sks-circle',
               instance_prompt='a sks circle', class_prompt='a circle',
               class_data_dir=class_dir, num_class_images=3,
               pipeline=PIPELINE)
    inputs = dreambooth_collate([ds[0], ds[1]])['inputs']

    seen = {}
    prepare = model.prepare

    def spy(inp):
        seen['batch'] = prepare(inp)
        return seen['batch']

    model.prepare = spy
    torch.manual_seed(0)
    losses = model.loss(inputs)
    batch = seen['batch']
    # One timestep per row, for all four rows, and each row conditioned on
    # its own prompt.
    assert batch.timesteps.shape == (4, )
    hidden, _ = model.encode_prompt(['a sks circle', 'a circle'])
    for row, prompt_idx in enumerate([0, 0, 1, 1]):
        torch.testing.assert_close(batch.encoder_hidden_states[row],
                                   hidden[prompt_idx])
    # The loss is instance + weight * prior, each over its own rows.
    with torch.no_grad():
        pred = model.run_unet(model.unet, batch)
    mse = ((pred - batch.target)**2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(losses['loss_instance'], mse[:2].mean())
    torch.testing.assert_close(losses['loss_prior'], 0.3 * mse[2:].mean())
