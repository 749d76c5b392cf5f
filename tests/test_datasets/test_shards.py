"""WebDataset shards: rank/worker split, faults, buckets and SDXL time_ids,
the shard writer, and resuming a run in the middle of an epoch."""
import io
import json
import logging
import os
import os.path as osp
import random
import signal

import mmcv
import numpy as np
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from PIL import Image
from torch.utils.data import DataLoader

from diffkd.datasets import (AspectRatioBuckets, ShardError,
                             WebDatasetShards, stream_collate)
from diffkd.datasets.buckets import BucketResizeCrop
from diffkd.datasets.shard_writer import imagefolder_rows, write_shards
from diffkd.datasets.shards import split_shards
from diffkd.registry import HOOKS

from ..conftest import REPO, run_config, run_tool

SIZES = [(32, 32), (40, 60), (60, 40), (34, 44), (44, 34), (36, 36)]


def png(h, w, seed):
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
        buf, 'PNG')
    return buf.getvalue()


def rows(n, start=0):
    for i in range(start, start + n):
        h, w = SIZES[i % len(SIZES)]
        yield dict(where=f'row {i}', caption=f'image {i}',
                   image=dict(bytes=png(h, w, i), path=f'{i:05d}.png'))


def make_shards(folder, n=60, per_shard=6):
    write_shards(rows(n), str(folder), per_shard, bucket_presets=('toy', ))
    return str(folder / ('{00000..%05d}.tar' % ((n - 1) // per_shard)))


def all_keys(n):
    return {f'{i:09d}' for i in range(n)}


def raw_keys(ds, rank, world, worker, workers, epoch=0):
    return [s['key'] for b in ds.epoch_batches(epoch, rank, world, worker,
                                                workers) for s in b]


@pytest.fixture(autouse=True)
def diffkd_scope():
    with DefaultScope.overwrite_default_scope('diffkd'):
        yield


TOY = [dict(type='BucketResizeCrop', buckets='toy'),
       dict(type='ComputeTimeIds'), dict(type='NormalizeRGB'),
       dict(type='PackInputs', keys=['img', 'text', 'time_ids'],
            meta_keys=['key', 'ori_shape', 'crop_top_left', 'bucket'])]


def test_ranks_and_workers_read_disjoint_samples_and_all_of_them(tmp_path):
    shards = make_shards(tmp_path, n=60, per_shard=6)  # 10 shards
    ds = WebDatasetShards(shards, batch_size=1, infinite=False)
    seen = [raw_keys(ds, r, 2, w, 2) for r in range(2) for w in range(2)]
    flat = [k for keys in seen for k in keys]
    assert len(flat) == len(set(flat)) == 60  # batch_size 1: no remainder
    assert set(flat) == all_keys(60)
    # Another epoch: another shard order, the same samples in all.
    again = [k for r in range(2) for w in range(2)
             for k in raw_keys(ds, r, 2, w, 2, epoch=1)]
    assert sorted(again) == sorted(flat) and again != flat

    # Batches of 4 per bucket: each reader drops fewer than 4 per bucket.
    ds = WebDatasetShards(shards, batch_size=4, infinite=False,
                          pipeline=[dict(type='BucketResizeCrop',
                                         buckets='toy')])
    seen = [raw_keys(ds, r, 2, w, 2) for r in range(2) for w in range(2)]
    flat = [k for keys in seen for k in keys]
    assert len(flat) == len(set(flat))
    assert 60 - len(flat) < 4 * 4 * len(ds.buckets)
    assert split_shards(list('abcdefgh'), 1, 2, 0, 2) == ['c', 'g']


def test_shards_from_an_fsspec_url(tmp_path):
    import fsspec
    folder = tmp_path / 'shards'
    make_shards(folder, n=12, per_shard=6)
    fs = fsspec.filesystem('memory')
    for name in ('00000.tar', '00001.tar'):
        fs.pipe(f'/d15/{name}', (folder / name).read_bytes())
    ds = WebDatasetShards('memory://d15/{00000..00001}.tar', batch_size=1,
                          infinite=False, num_samples=12)
    assert sorted(raw_keys(ds, 0, 1, 0, 1)) == sorted(all_keys(12))


def _ddp_worker(rank, shards, out, port):
    import torch.distributed as dist
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=2)
    try:
        with DefaultScope.overwrite_default_scope('diffkd'):
            ds = WebDatasetShards(shards, batch_size=3, infinite=False,
                                  pipeline=TOY)
        loader = DataLoader(ds, batch_size=None, num_workers=2,
                            collate_fn=stream_collate)
        keys = [k for b in loader for k in b['data_samples']['key']]
        with open(osp.join(out, f'rank{rank}.json'), 'w') as f:
            json.dump(keys, f)
    finally:
        dist.destroy_process_group()


def test_two_process_ddp_epoch_sees_disjoint_samples(tmp_path):
    shards = make_shards(tmp_path / 'shards', n=72, per_shard=6)  # 12
    port = random.randint(20000, 40000)
    # fork: the two ranks start without importing everything again
    torch.multiprocessing.start_processes(
        _ddp_worker, args=(shards, str(tmp_path), port), nprocs=2,
        start_method='fork')
    ranks = [json.load(open(tmp_path / f'rank{r}.json')) for r in range(2)]
    assert all(ranks)
    flat = ranks[0] + ranks[1]
    assert len(flat) == len(set(flat)), 'a sample was read twice'
    # The documented remainder: per rank, worker and bucket fewer than
    # batch_size samples (here 3 buckets, batch 3, 2 x 2 readers).
    missing = all_keys(72) - set(flat)
    assert len(missing) <= 2 * 2 * 3 * (3 - 1)


def test_corrupt_member_and_truncated_shard_are_skipped_and_counted(
        tmp_path):
    folder = tmp_path / 'shards'
    shards = make_shards(folder, n=24, per_shard=6)  # 4 shards
    import webdataset as wds
    # Shard 1: one image's bytes are garbage.
    bad = str(folder / '00001.tar')
    samples = list(wds.WebDataset(bad, shardshuffle=False))
    with wds.TarWriter(bad) as sink:
        for s in samples:
            s = {k: v for k, v in s.items() if not k.startswith('__url')}
            if s['__key__'] == '000000008':
                s['png'] = b'\x89PNG\r\n\x1a\n' + b'garbage' * 20
            sink.write(s)
    # Shard 2: cut in the middle of its fourth sample.
    cut = str(folder / '00002.tar')
    data = open(cut, 'rb').read()
    open(cut, 'wb').write(data[:len(data) // 2 + 700])
    messages = []
    handler = _ListHandler(messages)
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        ds = WebDatasetShards(shards, batch_size=1, infinite=False,
                              pipeline=TOY, shuffle_buffer=0,
                              shuffle_shards=False)
        keys = [k for b in DataLoader(ds, batch_size=None,
                                      collate_fn=stream_collate)
                for k in b['data_samples']['key']]
    finally:
        logger.removeHandler(handler)
    assert '000000008' not in keys
    truncated = [k for k in keys if 12 <= int(k) < 18]
    assert 0 < len(truncated) < 6  # read up to the cut
    assert set(keys) == all_keys(24) - {'000000008'} - {
        f'{i:09d}' for i in range(12 + len(truncated), 18)}
    assert ds.num_skipped == 2
    assert any(bad in m and 'key 000000008' in m for m in messages)
    assert any(cut in m and 'cannot be read to its end' in m
               for m in messages)

    fatal = WebDatasetShards(shards, batch_size=1, infinite=False,
                             pipeline=TOY, shuffle_buffer=0, fatal=True,
                             shuffle_shards=False)
    with pytest.raises(ShardError, match=f'shard {bad} key 000000008'):
        list(fatal)


class _ListHandler(logging.Handler):

    def __init__(self, out):
        super().__init__()
        self.out = out

    def emit(self, record):
        self.out.append(record.getMessage())


def test_time_ids_are_the_original_size_crop_and_bucket_used(tmp_path):
    import webdataset as wds
    shard = str(tmp_path / 'a.tar')
    images = {'portrait': (44, 34), 'landscape': (40, 60), 'exact': (32, 48)}
    with wds.TarWriter(shard) as sink:
        for i, (name, (h, w)) in enumerate(images.items()):
            meta = dict(caption=name)
            if name == 'landscape':  # img2dataset resized it from 400x600
                meta.update(original_width=600, original_height=400)
            sink.write({'__key__': name, 'png': png(h, w, i),
                        'json': json.dumps(meta).encode()})
    pipeline = [dict(type='BucketResizeCrop', buckets='toy'),
                dict(type='RandomHorizontalFlip', prob=1.0),
                dict(type='ComputeTimeIds'), dict(type='NormalizeRGB'),
                dict(type='PackInputs', keys=['img', 'time_ids'],
                     meta_keys=['key', 'crop_top_left', 'bucket'])]
    ds = WebDatasetShards(shard, batch_size=1, infinite=False,
                          pipeline=pipeline, num_samples=3)
    random.seed(3)
    got = {b['data_samples']['key'][0]: b for b in DataLoader(
        ds, batch_size=None, collate_fn=stream_collate)}
    buckets = AspectRatioBuckets.build('toy')
    expect_bucket = {'portrait': (48, 32), 'landscape': (32, 48),
                     'exact': (32, 48)}
    for i, (name, (h, w)) in enumerate(images.items()):
        batch = got[name]
        time_ids = batch['inputs']['time_ids'][0].tolist()
        bh, bw = expect_bucket[name]
        assert buckets.assign(h, w) == (bh, bw)
        ori = (400, 600) if name == 'landscape' else (h, w)
        top, left = time_ids[2:4]
        assert time_ids[:2] == list(ori) and time_ids[4:] == [bh, bw]
        # The pixels are the recorded crop of the image resized to cover
        # the bucket, mirrored (the flip moves the crop's left edge).
        scale = max(bh / h, bw / w)
        rh, rw = max(bh, round(h * scale)), max(bw, round(w * scale))
        resized = mmcv.imresize(np.asarray(Image.open(io.BytesIO(
            png(h, w, i)))), (rw, rh), interpolation='bicubic')
        unflipped_left = rw - int(left) - bw
        crop = resized[int(top):int(top) + bh,
                       unflipped_left:unflipped_left + bw][:, ::-1]
        assert np.allclose(batch['inputs']['img'][0].permute(1, 2, 0)
                           .numpy(), (crop - 127.5) / 127.5, atol=1e-6)
        assert 0 <= top <= rh - bh and 0 <= left <= rw - bw
    assert got['portrait']['inputs']['time_ids'][0, 3] in range(0, 38 - 32 + 1)
    assert got['exact']['inputs']['time_ids'][0, 2:4].tolist() == [0, 0]


def test_map_style_bucket_batches_are_one_shape(tmp_path):
    folder = tmp_path / 'imgs'
    os.makedirs(folder / 'images')
    with open(folder / 'metadata.jsonl', 'w') as f:
        for i in range(18):
            h, w = SIZES[i % len(SIZES)]
            open(folder / 'images' / f'{i}.png', 'wb').write(png(h, w, i))
            f.write(json.dumps(dict(file_name=f'images/{i}.png',
                                    text=f'image {i}')) + '\n')
    from mmengine.runner import Runner
    pipeline = TOY[:-1] + [dict(type='PackInputs', keys=['img'],
                                meta_keys=['sample_idx'])]
    # Built as the Runner builds a config's dataloader.
    loader = Runner.build_dataloader(dict(
        batch_size=2,
        sampler=dict(type='DefaultSampler', shuffle=True),
        batch_sampler=dict(type='BucketBatchSampler'),
        collate_fn=dict(type='default_collate'),
        dataset=dict(type='HFImageTextDataset', dataset=str(folder),
                     pipeline=pipeline, cache_dir=str(tmp_path / 'hf'))),
        seed=0)
    ds = loader.dataset
    seen = []
    for batch in loader:
        assert batch['inputs']['img'].ndim == 4  # stacked: one shape
        seen += batch['data_samples']['sample_idx'].tolist()
    buckets = BucketResizeCrop('toy').buckets
    assert sorted(seen) == list(range(18))  # nothing dropped by default
    assert {buckets.assign(*s) for s in ds.image_sizes()} == set(
        buckets.sizes)


def test_images_to_shards_resumes_and_writes_a_manifest(tmp_path):
    folder = tmp_path / 'imgs'
    os.makedirs(folder)
    with open(folder / 'metadata.jsonl', 'w') as f:
        for i in range(10):
            h, w = SIZES[i % len(SIZES)]
            open(folder / f'{i}.png', 'wb').write(png(h, w, i))
            f.write(json.dumps(dict(file_name=f'{i}.png',
                                    text=f'image {i}')) + '\n')
        f.write(json.dumps(dict(file_name='missing.png', text='x')) + '\n')
    out = tmp_path / 'out'
    # Interrupted after its first shard ...
    write_shards(imagefolder_rows(str(folder)), str(out), 4,
                 stop_after_shards=1)
    assert sorted(os.listdir(out)) == ['00000.tar', 'progress.json']
    first = os.stat(out / '00000.tar').st_mtime_ns
    # ... and run again by the tool: the first shard is kept as it is.
    run_tool('dataset_converters/images_to_shards.py',
             [str(folder), str(out), '--samples-per-shard', '4'])
    assert os.stat(out / '00000.tar').st_mtime_ns == first
    manifest = json.load(open(out / 'manifest.json'))
    assert manifest['num_samples'] == 10 and manifest['num_skipped'] == 1
    assert 'missing.png' in manifest['skipped'][0]
    assert [s['count'] for s in manifest['shards']] == [4, 4, 2]
    assert manifest['pattern'] == '{00000..00002}.tar'
    assert sum(manifest['bucket_histogram']['sdxl'].values()) == 10
    ds = WebDatasetShards(str(out / manifest['pattern']), batch_size=1,
                          infinite=False)
    assert len(ds) == 10 and len(raw_keys(ds, 0, 1, 0, 1)) == 10


def test_a_resumed_stream_answers_the_skipped_batches_with_placeholders(
        tmp_path):
    shards = make_shards(tmp_path, n=36, per_shard=6)
    ds = WebDatasetShards(shards, batch_size=2, pipeline=TOY,
                          num_samples=36)

    def batches(dataset, n):
        it = iter(DataLoader(dataset, batch_size=None,
                             collate_fn=stream_collate))
        return [next(it) for _ in range(n)]

    straight = batches(ds, 8)
    # An infinite stream goes on into the next epoch.
    assert {b['stream']['epoch'] for b in straight[-1:]} <= {0, 1}
    resumed = WebDatasetShards(shards, batch_size=2, pipeline=TOY,
                               num_samples=36)
    resumed.load_state_dict(dict(positions=[straight[2]['stream']]))
    again = batches(resumed, 8)
    assert [b['stream']['placeholder'] for b in again[:3]] == [True] * 3
    assert all('inputs' not in b for b in again[:3])  # nothing decoded
    assert [b['data_samples']['key'] for b in again[3:]] == [
        b['data_samples']['key'] for b in straight[3:]]


def test_positions_that_do_not_add_up_start_the_stream_over():
    from types import SimpleNamespace

    from diffkd.engine.hooks import StreamPositionHook
    runner = SimpleNamespace(train_dataloader=SimpleNamespace(num_workers=2))
    state = dict(world_size=1, num_workers=2, positions=[
        dict(rank=0, worker=0, epoch=0, index=1, count=2),
        dict(rank=0, worker=1, epoch=0, index=0, count=1)])
    hook = StreamPositionHook()
    hook.after_load_checkpoint(runner, dict(stream_positions=state,
                                            meta=dict(iter=3)))
    assert hook._pending is state
    hook = StreamPositionHook()
    hook.after_load_checkpoint(runner, dict(stream_positions=state,
                                            meta=dict(iter=4)))
    assert hook._pending is None and not hook.positions
    runner.train_dataloader.num_workers = 4  # other workers: over again
    hook.after_load_checkpoint(runner, dict(stream_positions=state,
                                            meta=dict(iter=3)))
    assert hook._pending is None


def test_a_saved_datasets_folder_becomes_shards(tmp_path):
    import datasets as hfds
    paths = []
    for i, (h, w) in enumerate(SIZES[:4]):
        paths.append(str(tmp_path / f'{i}.png'))
        open(paths[-1], 'wb').write(png(h, w, i))
    saved = str(tmp_path / 'saved')
    hfds.Dataset.from_dict(dict(
        image=paths, text=[f'image {i}' for i in range(4)])).cast_column(
            'image', hfds.Image()).save_to_disk(saved)
    manifest = write_shards(imagefolder_rows(saved), str(tmp_path / 'out'),
                            3)
    assert manifest['num_samples'] == 4 and manifest['num_skipped'] == 0
    ds = WebDatasetShards(str(tmp_path / 'out' / manifest['pattern']),
                          batch_size=1, infinite=False, shuffle_buffer=0,
                          shuffle_shards=False)
    got = [(s['text'], s['size']) for b in ds.epoch_batches(0, 0, 1, 0, 1)
           for s in b]
    assert got == [(f'image {i}', SIZES[i]) for i in range(4)]


@HOOKS.register_module(force=True)
class KeyLogHook(Hook):
    """Append the keys of every trained batch to ``keys.jsonl``."""

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        with open(osp.join(runner.work_dir, 'keys.jsonl'), 'a') as f:
            f.write(json.dumps(data_batch['data_samples']['key']) + '\n')


@HOOKS.register_module(force=True)
class SignalAtHook(Hook):
    priority = 'VERY_HIGH'

    def __init__(self, at_iter):
        self.at_iter = at_iter

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter + 1 == self.at_iter:
            os.kill(os.getpid(), signal.SIGTERM)


def _keys(work_dir):
    with open(osp.join(work_dir, 'keys.jsonl')) as f:
        return [json.loads(line) for line in f]


@pytest.mark.slow
def test_sigterm_then_resume_sees_the_keys_of_one_straight_run(tmp_path):
    """The toy distillation trains from shards with buckets, 2 workers; a
    run stopped by SIGTERM after 3 of 6 iterations and resumed trains on
    exactly the batches of the uninterrupted run."""
    from diffkd.engine.errors import TrainingInterrupted
    base = osp.join(REPO, 'configs/toy/ssd_1b_distill_shards_toy.py')
    config = tmp_path / 'cfg.py'
    config.write_text(
        f'_base_ = [{base!r}]\n'
        'custom_hooks = [dict(type="KeyLogHook"), '
        'dict(type="SignalAtHook", at_iter=3)]\n')
    opts = ['train_cfg.max_iters=6', 'train_dataloader.num_workers=2',
            'train_dataloader.dataset.batch_size=8',
            'model.student.model=diffkd-toy/sdxl',
            'model.teacher.model=diffkd-toy/sdxl',
            'default_hooks.checkpoint.interval=2',
            'default_hooks.checkpoint.max_keep_ckpts=-1']
    straight = run_config(str(config), tmp_path / 'straight', *opts,
                          'custom_hooks.1.at_iter=0')
    with pytest.raises(TrainingInterrupted):
        run_config(str(config), tmp_path / 'split', *opts)
    first = _keys(tmp_path / 'split')
    assert len(first) == 3
    from diffkd.engine.runner import read_checkpoint
    ckpt = read_checkpoint(str(tmp_path / 'split' / 'iter_3.pth'))
    # Worker 0 gave batches 0 and 2 of the round robin, worker 1 batch 1.
    assert [(p['worker'], p['epoch'], p['index'], p['count'])
            for p in ckpt['stream_positions']['positions']] == [
                (0, 0, 1, 2), (1, 0, 0, 1)]
    # The interval checkpoint holds the batch of its own iteration too.
    ckpt = read_checkpoint(str(tmp_path / 'split' / 'iter_2.pth'))
    assert [p['count'] for p in ckpt['stream_positions']['positions']] == [
        1, 1]
    run_config(str(config), tmp_path / 'split', *opts,
               'custom_hooks.1.at_iter=0', resume=True)
    logs = [open(osp.join(root, n)).read()
            for root, _, names in os.walk(tmp_path / 'split')
            for n in names if n.endswith('.log')]
    assert any('stream resumed after worker 0: epoch 0 batch 1, worker 1: '
               'epoch 0 batch 0' in log for log in logs)
    both = _keys(tmp_path / 'split')
    assert both == _keys(straight) and len(both) == 6
    flat = [k for b in both for k in b]
    assert len(flat) == len(set(flat)) == 48  # within the first epoch
