"""Latent cache: what is stored agrees with what the encoders would compute
on the same crop, stale caches are refused, and training on it computes the
same loss as training on images."""
import functools
import json
import os
import os.path as osp
import shutil

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from diffkd.datasets import (CachedLatentDataset, HFImageTextDataset,
                             StaleCacheError, fill_latent_cache)
from diffkd.datasets.transforms import NormalizeRGB, ResizeShortEdge
from diffkd.registry import MODELS
from tests.conftest import run_tool


def source(size=40, max_samples=6):
    return dict(
        type='HFImageTextDataset', dataset='diffkd-toy/shapes',
        max_samples=max_samples,
        pipeline=[
            dict(type='ResizeShortEdge', size=size),
            dict(type='RandomCropWithCoords', size=32),
            dict(type='RandomHorizontalFlip', prob=0.5),
            dict(type='ComputeTimeIds'),
            dict(type='NormalizeRGB'),
            dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
        ])


ENCODER = dict(type='StableDiffusionXL', model='diffkd-toy/sdxl')


@pytest.fixture(scope='module')
def cache(tmp_path_factory, toy_sdxl, toy_shapes):
    out = str(tmp_path_factory.mktemp('cache') / 'shapes')
    fill_latent_cache(out, ENCODER, source(), variants=2, shard_size=5,
                      batch_size=4)
    return out


@pytest.fixture(scope='module')
def sdxl(toy_sdxl):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(ENCODER)


@functools.lru_cache()
def _shapes():
    return HFImageTextDataset('diffkd-toy/shapes', max_samples=6)


def _replay(record, size=40):
    """The record's image, re-made from its stored crop and flip."""
    raw = _shapes().get_data_info(record['index'])
    img = ResizeShortEdge(size=size).transform(dict(img=raw['img']))['img']
    top, left = record['crop_top_left']
    if record['flip']:  # SDXL records the crop in flipped coordinates
        left = img.shape[1] - left - 32
    img = img[top:top + 32, left:left + 32]
    if record['flip']:
        img = mmcv.imflip(img, direction='horizontal')
    img = NormalizeRGB().transform(dict(img=img))['img']
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))


def test_records_carry_their_crop_and_agree_with_the_encoders(cache, sdxl):
    manifest = json.load(open(osp.join(cache, 'manifest.json')))
    records = manifest['records']
    assert len(records) == 12 and manifest['num_images'] == 6
    assert sorted(f for f in os.listdir(cache)
                  if f.startswith('shard')) == [
                      f'shard_0000{i}.safetensors' for i in range(3)]
    crops = {(tuple(r['crop_top_left']), r['flip']) for r in records}
    assert len(crops) > 2  # each variant drew its own crop/flip
    ds = CachedLatentDataset(cache, ENCODER, source(), variants=2)
    for r in (0, 7, 11):
        rec = records[r]
        row = ds._row(r)
        # SDXL micro-conditioning from the crop this latent was made with.
        assert row['time_ids'].tolist() == [*rec['ori_shape'],
                                            *rec['crop_top_left'], 32, 32]
        img = _replay(rec)[None]
        with torch.no_grad():
            dist = sdxl.vae.encode(img).latent_dist
            hidden, added = sdxl.encode_prompt([rec['text']])
        torch.testing.assert_close(row['latent_mean'], dist.mean[0],
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(row['latent_std'], dist.std[0],
                                   atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(row['prompt_embeds'], hidden[0])
        torch.testing.assert_close(row['text_embeds'],
                                   added['text_embeds'][0])


def test_training_on_the_cache_is_training_on_the_images(cache, sdxl):
    ds = CachedLatentDataset(cache, ENCODER, source(), variants=2)
    rec = ds.records[3]
    row = {k: v[None] for k, v in ds._row(3).items()}
    cached = dict(row, text=[rec['text']])
    images = dict(img=_replay(rec)[None], text=[rec['text']],
                  time_ids=row['time_ids'])
    with torch.no_grad():
        torch.manual_seed(0)
        a = sdxl.loss(cached)['loss']
        torch.manual_seed(0)
        b = sdxl.loss(images)['loss']
    assert float(a) == pytest.approx(float(b), rel=1e-4, abs=1e-6)


def test_caption_drop_uses_the_empty_prompt(cache):
    ds = CachedLatentDataset(cache, ENCODER, source(), variants=2,
                             caption_drop=1.0)
    sample = ds[0]['inputs']
    assert sample['text'] == ''
    # SDXL's unconditional input is zeros.
    assert not sample['prompt_embeds'].any()
    assert not sample['text_embeds'].any()
    assert sample['time_ids'].shape == (6, )


def test_stale_or_missing_cache_is_refused(cache, tmp_path, toy_sdxl):
    with pytest.raises(StaleCacheError, match='source changed'):
        CachedLatentDataset(cache, ENCODER, source(size=48), variants=2)
    with pytest.raises(StaleCacheError, match='variants'):
        CachedLatentDataset(cache, ENCODER, source(), variants=3)
    # Other VAE weights under the same pipeline layout.
    other = tmp_path / 'sdxl'
    shutil.copytree(toy_sdxl, other)
    from safetensors.torch import load_file, save_file
    (vae_file, ) = [f for f in (other / 'vae').iterdir()
                    if f.suffix == '.safetensors']
    state = load_file(vae_file)
    name = next(iter(state))
    state[name] = state[name] + 0.01
    save_file(state, vae_file)
    with pytest.raises(StaleCacheError, match='vae'):
        CachedLatentDataset(cache, dict(ENCODER, model=str(other)), source(),
                            variants=2)
    with pytest.raises(StaleCacheError, match='tools/cache_latents.py'):
        CachedLatentDataset(str(tmp_path / 'none'), ENCODER, source())


def test_default_cache_is_one_folder_per_content_filled_once(toy_sdxl):
    """Without a cache_dir the cache lives in $DIFFKD_HOME/latent_cache,
    named by its content: filled on first use, reused after, and another
    content (here: more variants) gets its own folder."""
    from diffkd.utils.hub import diffkd_home
    src = source(max_samples=3)
    first = CachedLatentDataset(encoder=ENCODER, source=src, auto_fill=True)
    assert osp.dirname(first.cache_dir) == osp.join(diffkd_home(),
                                                    'latent_cache')
    manifest = osp.join(first.cache_dir, 'manifest.json')
    stamp = os.stat(manifest).st_mtime_ns
    again = CachedLatentDataset(encoder=ENCODER, source=src)  # no refill
    assert again.cache_dir == first.cache_dir
    assert os.stat(manifest).st_mtime_ns == stamp
    torch.testing.assert_close(again[0]['inputs']['prompt_embeds'],
                               first[0]['inputs']['prompt_embeds'])
    other = CachedLatentDataset(encoder=ENCODER, source=src, variants=2,
                                auto_fill=True)
    assert other.cache_dir != first.cache_dir and len(other.records) == 6
    with pytest.raises(TypeError, match='needs source'):
        CachedLatentDataset(encoder=ENCODER)


def test_caption_drop_may_not_be_baked_in(tmp_path, toy_sdxl):
    src = source()
    src['pipeline'].insert(3, dict(type='RandomCaptionDrop', prob=0.2))
    with pytest.raises(ValueError, match='caption_drop=0.2'):
        fill_latent_cache(str(tmp_path / 'c'), ENCODER, src)


def test_cache_tool_fills_the_configs_cache(tmp_path, toy_sdxl):
    cache_dir = tmp_path / 'cache'
    config = 'configs/toy/ssd_1b_distill_cached_toy.py'
    opts = [f'train_dataloader.dataset.cache_dir={cache_dir}',
            'train_dataloader.dataset.encoder.model=diffkd-toy/sdxl',
            'train_dataloader.dataset.source.max_samples=5']
    run_tool('cache_latents.py', [config, '--cfg-options', *opts])
    manifest = json.load(open(cache_dir / 'manifest.json'))
    assert len(manifest['records']) == 5 * 2  # the config's 2 variants
    # The config's dataset reads it as it is (no refill: same fingerprint).
    cfg = Config.fromfile(config)
    cfg.merge_from_dict({
        'train_dataloader.dataset.cache_dir': str(cache_dir),
        'train_dataloader.dataset.encoder.model': 'diffkd-toy/sdxl',
        'train_dataloader.dataset.source.max_samples': 5})
    ds_cfg = cfg.train_dataloader.dataset.to_dict()
    ds_cfg.pop('type')
    ds_cfg['auto_fill'] = False
    ds = CachedLatentDataset(**ds_cfg)
    assert len(ds) == 5 and ds[4]['inputs']['latent_mean'].shape[0] == 4
    with pytest.raises(SystemExit, match='not a CachedLatentDataset'):
        run_tool('cache_latents.py',
                 ['configs/toy/ssd_1b_distill_uncached_toy.py'])


def test_size_conditioning_is_stored_exactly_in_a_bfloat16_cache(tmp_path,
                                                                 toy_sdxl):
    """bfloat16 holds whole numbers exactly only up to 256: a 1365x1021
    photo's original size must come back as 1365x1021, not 1368x1020."""
    from PIL import Image
    folder = tmp_path / 'photos'
    folder.mkdir()
    rows = []
    for i, (w, h) in enumerate([(1365, 1021), (333, 1999)]):
        Image.new('RGB', (w, h), (200, 30 * i, 40)).save(folder / f'{i}.png')
        rows.append(json.dumps(dict(file_name=f'{i}.png', text=f'photo {i}')))
    (folder / 'metadata.jsonl').write_text('\n'.join(rows) + '\n')
    src = dict(source(size=32), dataset=str(folder), max_samples=None)
    src['pipeline'][1] = dict(type='CenterCropWithCoords', size=32)
    del src['pipeline'][2]  # no flip
    out = str(tmp_path / 'cache')
    fill_latent_cache(out, ENCODER, src, dtype='bfloat16')
    data = CachedLatentDataset(out, ENCODER, src, dtype='bfloat16')
    got = [data[i]['inputs'] for i in range(2)]
    assert got[0]['latent_mean'].dtype == torch.bfloat16
    assert got[0]['time_ids'].dtype == torch.float32
    assert got[0]['time_ids'][:2].tolist() == [1021, 1365]
    assert got[1]['time_ids'][:2].tolist() == [1999, 333]


def test_bucketed_cache_keeps_each_bucket_apart(tmp_path, toy_sdxl):
    """Images of several aspect ratios: each cached latent has its
    bucket's shape, its time_ids are the original size, crop and bucket,
    and BucketBatchSampler batches the cache one bucket at a time."""
    from mmengine.runner import Runner
    from PIL import Image
    folder = tmp_path / 'imgs'
    os.makedirs(folder)
    sizes = [(32, 32), (40, 60), (60, 40), (44, 34), (36, 36), (32, 48)]
    with open(folder / 'metadata.jsonl', 'w') as f:
        for i, (h, w) in enumerate(sizes):
            Image.new('RGB', (w, h), (40 * i, 100, 200)).save(
                folder / f'{i}.png')
            f.write(json.dumps(dict(file_name=f'{i}.png',
                                    text=f'a red circle {i}')) + '\n')
    src = dict(type='HFImageTextDataset', dataset=str(folder),
               cache_dir=str(tmp_path / 'hf'), pipeline=[
                   dict(type='BucketResizeCrop', buckets='toy'),
                   dict(type='RandomHorizontalFlip', prob=0.5),
                   dict(type='ComputeTimeIds'), dict(type='NormalizeRGB'),
                   dict(type='PackInputs', keys=['img', 'text', 'time_ids'],
                        meta_keys=['ori_shape', 'crop_top_left', 'flip',
                                   'bucket'])])
    out = str(tmp_path / 'cache')
    fill_latent_cache(out, ENCODER, src, variants=2, shard_size=3,
                      batch_size=4)
    ds = CachedLatentDataset(out, ENCODER, src, variants=2)
    expect = {0: (32, 32), 1: (32, 48), 2: (48, 32), 3: (48, 32),
              4: (32, 32), 5: (32, 48)}
    for r, rec in enumerate(ds.records):
        bucket = expect[rec['index']]
        assert tuple(rec['bucket']) == bucket
        row = ds._row(r)
        assert tuple(row['latent_mean'].shape[1:]) == (bucket[0] // 4,
                                                       bucket[1] // 4)
        assert row['time_ids'].tolist() == [
            *sizes[rec['index']], *rec['crop_top_left'], *bucket]
    with DefaultScope.overwrite_default_scope('diffkd'):
        loader = Runner.build_dataloader(dict(
            batch_size=2, sampler=dict(type='DefaultSampler', shuffle=True),
            batch_sampler=dict(type='BucketBatchSampler'),
            collate_fn=dict(type='default_collate'), dataset=ds), seed=0)
    seen = []
    for batch in loader:  # stacked, so one shape per batch
        assert batch['inputs']['latent_mean'].ndim == 4
        seen += batch['data_samples']['sample_idx'].tolist()
    assert sorted(seen) == list(range(6))
