"""Precomputed VAE latents and text embeddings.

A step then skips the VAE encoder and the text encoders. The cache is
filled once (``python tools/cache_latents.py CONFIG``, or automatically on
first use) by running the source dataset's transforms and the training
pipeline's own encoders:

* each image is encoded ``variants`` times, each time with its own random
  crop/flip; a record keeps the latent distribution (mean and std, so every
  step still draws a fresh latent as ``latent_dist.sample()`` does), the
  prompt embeddings, and the crop, original size and flip it was made with
  -- SDXL's size/crop conditioning (``time_ids``) is stored with it and can
  never disagree with the latent;
* caption dropout happens at training time (the empty prompt's embedding is
  stored once), so a caption is not dropped for good;
* ``manifest.json`` holds a fingerprint of the encoders' files, the source
  dataset and its transforms, and the image reader's version; a cache whose
  fingerprint differs from the config's is stale and is refused (or rebuilt
  with ``auto_fill``).

Layout: ``<cache_dir>/manifest.json``, ``shard_00000.safetensors`` ... (up to
``shard_size`` records each) and ``empty.safetensors``.
"""
import hashlib
import json
import os
import os.path as osp
import random
import shutil
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmengine.runner import set_random_seed
from torch.utils.data import Dataset

from diffkd.registry import DATASETS, MODELS
from diffkd.utils.hub import diffkd_home, resolve_model_path
from .image_io import IMAGE_READER_VERSION

# 2: records name their shard file and row (shards of one latent shape)
CACHE_FORMAT = 2
MANIFEST = 'manifest.json'
# Pipeline folders whose files decide the cached values.
ENCODER_FOLDERS = ('vae', 'text_encoder', 'text_encoder_2', 'tokenizer',
                   'tokenizer_2')
FILL_COMMAND = 'python tools/cache_latents.py CONFIG'


class StaleCacheError(RuntimeError):
    """The cache on disk was made with other encoders, data or transforms."""


def _hash_folder(folder: str) -> Optional[str]:
    if not osp.isdir(folder):
        return None
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(folder)):
        for name in sorted(files):
            path = osp.join(root, name)
            h.update(osp.relpath(path, folder).encode())
            with open(path, 'rb') as f:
                for chunk in iter(lambda: f.read(1 << 22), b''):
                    h.update(chunk)
    return h.hexdigest()


def cache_fingerprint(encoder: Dict, source: Dict, variants: int,
                      dtype: str) -> Dict:
    """What the cached values depend on, without loading any model."""
    model = encoder['model']
    path = resolve_model_path(model)
    fp = dict(format=CACHE_FORMAT, encoder=_canonical(encoder),
              source=_canonical(source), variants=variants, dtype=dtype,
              image_reader=IMAGE_READER_VERSION)
    for folder in ENCODER_FOLDERS:
        digest = _hash_folder(osp.join(path, folder))
        if digest is not None:
            fp[folder] = digest
    return fp


def _canonical(cfg) -> str:
    return json.dumps(cfg, sort_keys=True, default=str)


def default_cache_dir(fingerprint: Dict) -> str:
    """``$DIFFKD_HOME/latent_cache/<digest of the fingerprint>``: a cache
    per distinct content, shared by every config (and run) that caches the
    same thing, and never stale (other content, other folder)."""
    digest = hashlib.sha256(_canonical(fingerprint).encode()).hexdigest()
    return osp.join(diffkd_home(), 'latent_cache', digest[:16])


def _check_source(source: Dict):
    for t in source.get('pipeline', []):
        if t.get('type') == 'RandomCaptionDrop':
            raise ValueError(
                'the cached source pipeline has RandomCaptionDrop: a caption '
                'dropped while caching would stay dropped; remove it and set '
                f"caption_drop={t.get('prob', 0.1)} on CachedLatentDataset")


@torch.no_grad()
def stored_dtype(key: str, dtype: torch.dtype) -> torch.dtype:
    """The cache's dtype, except for SDXL's size and crop conditioning: whole
    pixel counts, which bfloat16 holds exactly only up to 256 (1365 would
    come back as 1368), stay float32."""
    return torch.float32 if key == 'time_ids' else dtype


def fill_latent_cache(cache_dir: str, encoder: Dict, source: Dict,
                      variants: int = 1, dtype: str = 'float32',
                      shard_size: int = 1024, batch_size: int = 16,
                      seed: int = 0, device: Optional[str] = None) -> str:
    """Encode every sample of ``source`` ``variants`` times into
    ``cache_dir`` (written to a temporary folder and renamed: a crash never
    leaves a half-filled cache)."""
    from mmengine.utils import ProgressBar
    from safetensors.torch import save_file

    _check_source(source)
    fingerprint = cache_fingerprint(encoder, source, variants, dtype)
    with DefaultScope.overwrite_default_scope('diffkd'):
        model = MODELS.build(dict(encoder))
        dataset = DATASETS.build(dict(source))
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    model.to(device).eval()
    out_dtype = getattr(torch, dtype)

    parent = osp.dirname(osp.abspath(cache_dir))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix='.cache-', dir=parent)
    records: List[Dict] = []
    # One buffer of rows per latent shape (aspect-ratio bucket): a shard
    # file stacks rows of one shape.
    shards: Dict[tuple, Dict[str, List[torch.Tensor]]] = {}
    n_shards = 0

    def encode(texts, imgs=None, time_ids=None):
        inputs = dict(text=texts)
        if time_ids is not None:
            inputs['time_ids'] = time_ids
        if imgs is not None:
            inputs['img'] = imgs
        hidden, added = model.encode_prompt(texts, inputs)
        out = dict(prompt_embeds=hidden)
        if 'text_embeds' in added:
            out['text_embeds'] = added['text_embeds']
        if time_ids is not None:
            out['time_ids'] = added.get('time_ids', time_ids)
        return out

    def write_shard(shape):
        nonlocal n_shards
        shard = shards.pop(shape, None)
        if shard:
            tensors = {k: torch.stack(v).to(stored_dtype(k, out_dtype))
                       .contiguous()
                       for k, v in shard.items() if k != '_records'}
            name = f'shard_{n_shards:05d}.safetensors'
            save_file(tensors, osp.join(tmp, name))
            for row, record in enumerate(shard['_records']):
                record.update(shard=name, row=row)
            n_shards += 1

    def encode_group(group):
        samples = [sample for _, _, sample in group]
        imgs = torch.stack([s['inputs']['img'] for s in samples]).to(device)
        texts = [s['inputs']['text'] for s in samples]
        time_ids = None
        if all('time_ids' in s['inputs'] for s in samples):
            time_ids = torch.stack(
                [s['inputs']['time_ids'] for s in samples]).to(device)
        dist = model.vae.encode(imgs.to(model.vae.dtype)).latent_dist
        values = dict(latent_mean=dist.mean, latent_std=dist.std,
                      **encode(texts, imgs, time_ids))
        shape = tuple(imgs.shape[2:])
        for row, (idx, variant, sample) in enumerate(group):
            shard = shards.setdefault(shape, {'_records': []})
            for k, v in values.items():
                shard.setdefault(k, []).append(v[row].cpu())
            meta = sample.get('data_samples') or {}
            record = dict(
                index=idx, variant=variant, text=texts[row],
                latent_shape=list(dist.mean.shape[2:]),
                **{k: _jsonable(meta[k]) for k in
                   ('ori_shape', 'crop_top_left', 'flip', 'bucket')
                   if k in meta})
            shard['_records'].append(record)
            records.append(record)
            if len(shard['_records']) == shard_size:
                write_shard(shape)

    try:
        set_random_seed(seed)
        jobs = [(i, v) for i in range(len(dataset)) for v in range(variants)]
        bar = ProgressBar(len(jobs))
        # Samples wait per image shape (bucket) until a batch is full.
        pending: Dict[tuple, List] = {}
        for idx, variant in jobs:
            sample = dataset[idx]
            shape = tuple(sample['inputs']['img'].shape)
            group = pending.setdefault(shape, [])
            group.append((idx, variant, sample))
            if len(group) == batch_size:
                encode_group(pending.pop(shape))
            bar.update()
        for group in pending.values():
            encode_group(group)
        for shape in list(shards):
            write_shard(shape)
        records.sort(key=lambda r: (r['index'], r['variant']))
        # The empty prompt, for caption dropout at training time.
        empty = encode([''])
        save_file({k: v.to(stored_dtype(k, out_dtype)).cpu().contiguous()
                   for k, v in empty.items()},
                  osp.join(tmp, 'empty.safetensors'))
        with open(osp.join(tmp, MANIFEST), 'w') as f:
            json.dump(dict(fingerprint=fingerprint, shard_size=shard_size,
                           num_images=len(dataset), records=records), f)
        old = None
        if osp.exists(cache_dir):
            old = tempfile.mkdtemp(prefix='.old-', dir=parent)
            os.replace(cache_dir, osp.join(old, 'x'))
        os.replace(tmp, cache_dir)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if osp.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    print_log(f'latent cache: {len(records)} records of {len(dataset)} '
              f'images in {cache_dir}', logger='current')
    return cache_dir


def fill_config_latent_cache(cfg, batch_size: int = 16, seed: int = 0,
                              device: Optional[str] = None,
                              name: Optional[str] = None) -> str:
    """:func:`fill_latent_cache` for a config whose training dataset is a
    ``CachedLatentDataset`` (``tools/cache_latents.py``): its cache dir,
    encoder, source, variants, dtype and shard size. ``name``: the config
    file, for the message when its dataset caches nothing."""
    ds = cfg.train_dataloader.dataset
    if ds.get('type') != 'CachedLatentDataset':
        sys.exit(f'error: {name or "the config"}: train_dataloader.dataset '
                 f"is {ds.get('type')!r}, not a CachedLatentDataset; "
                 'nothing to cache')
    encoder, source = ds.encoder.to_dict(), ds.source.to_dict()
    variants, dtype = ds.get('variants', 1), ds.get('dtype', 'float32')
    cache_dir = ds.get('cache_dir') or default_cache_dir(
        cache_fingerprint(encoder, source, variants, dtype))
    return fill_latent_cache(
        cache_dir, encoder, source, variants=variants, dtype=dtype,
        shard_size=ds.get('shard_size', 1024), batch_size=batch_size,
        seed=seed, device=device)


def _jsonable(value):
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value


def read_manifest(cache_dir: str) -> Optional[Dict]:
    path = osp.join(cache_dir, MANIFEST)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _cache_problem(cache_dir: str, fingerprint: Dict) -> Optional[str]:
    """Why the cache at ``cache_dir`` cannot be used (None: it can)."""
    manifest = read_manifest(cache_dir)
    if manifest is None:
        return f'there is no latent cache at {cache_dir}'
    stale = stale_keys(manifest, fingerprint)
    if stale:
        return (f'the latent cache at {cache_dir} is stale: '
                f'{", ".join(stale)} changed since it was filled')
    return None


def stale_keys(manifest: Dict, fingerprint: Dict) -> List[str]:
    saved = manifest.get('fingerprint', {})
    return sorted(k for k in set(saved) | set(fingerprint)
                  if saved.get(k) != fingerprint.get(k))


@DATASETS.register_module()
class CachedLatentDataset(Dataset):
    """Training samples read from a latent cache.

    Args:
        cache_dir: the cache folder; default: one per distinct content under
            ``$DIFFKD_HOME/latent_cache`` (:func:`default_cache_dir`).
        encoder: config of the diffusion wrapper whose VAE and text
            encoders fill the cache (``dict(type='StableDiffusionXL',
            model=...)``): the training model's own pipeline.
        source: config of the dataset to cache (with its transforms, up to
            and including ``PackInputs``; no ``RandomCaptionDrop``).
        variants: random crops/flips cached per image; each access draws one.
        caption_drop: probability of training on the empty prompt.
        dtype: dtype of the stored tensors.
        auto_fill: fill (or rebuild) a missing or stale cache on first use
            instead of refusing it.
    """

    def __init__(self, cache_dir: Optional[str] = None,
                 encoder: Optional[Dict] = None,
                 source: Optional[Dict] = None,
                 variants: int = 1, caption_drop: float = 0.0,
                 dtype: str = 'float32', auto_fill: bool = False,
                 shard_size: int = 1024):
        missing = [k for k, v in (('encoder', encoder), ('source', source))
                   if not v]
        if missing:
            raise TypeError(f'CachedLatentDataset needs {" and ".join(missing)}'
                            ' (the model config that encodes and the '
                            'dataset config to cache)')
        _check_source(source)
        fingerprint = cache_fingerprint(encoder, source, variants, dtype)
        cache_dir = cache_dir or default_cache_dir(fingerprint)
        self.cache_dir = cache_dir
        self.caption_drop = caption_drop
        self.variants = variants
        problem = _cache_problem(cache_dir, fingerprint)
        if problem:
            if not auto_fill:
                raise StaleCacheError(
                    f'{problem}; fill it with `{FILL_COMMAND}` (or set '
                    'auto_fill=True on the dataset)')
            self._fill_once(cache_dir, fingerprint, encoder, source,
                            variants, dtype, shard_size)
        manifest = read_manifest(cache_dir)
        self.records = manifest['records']
        self.num_images = manifest['num_images']
        self.shard_size = manifest['shard_size']
        self._shards: Dict[int, object] = {}
        from safetensors.torch import load_file
        self.empty = load_file(osp.join(cache_dir, 'empty.safetensors'))

    @staticmethod
    def _fill_once(cache_dir, fingerprint, encoder, source, variants, dtype,
                   shard_size):
        # In a distributed run rank 0 fills while the others wait; runs
        # sharing a cache (same content) fill it once, under a file lock.
        from filelock import FileLock
        from mmengine.dist import barrier, get_rank
        if get_rank() == 0:
            os.makedirs(osp.dirname(osp.abspath(cache_dir)), exist_ok=True)
            with FileLock(osp.abspath(cache_dir) + '.lock'):
                problem = _cache_problem(cache_dir, fingerprint)
                if problem:
                    print_log(f'{problem}: filling it now', logger='current')
                    fill_latent_cache(cache_dir, encoder, source, variants,
                                      dtype, shard_size)
        barrier()

    def __len__(self) -> int:
        return self.num_images

    def _row(self, r: int) -> Dict[str, torch.Tensor]:
        from safetensors import safe_open
        record = self.records[r]
        name, offset = record['shard'], record['row']
        if name not in self._shards:
            self._shards[name] = safe_open(
                osp.join(self.cache_dir, name), framework='pt')
        f = self._shards[name]
        return {k: f.get_slice(k)[offset] for k in f.keys()}

    def buckets_of(self) -> List[tuple]:
        """The latent shape of each image (its aspect-ratio bucket, which
        every variant of an image shares), for ``BucketBatchSampler``."""
        return [tuple(self.records[i * self.variants]['latent_shape'])
                for i in range(self.num_images)]

    def __getitem__(self, idx: int) -> Dict:
        r = idx * self.variants + random.randrange(self.variants)
        record = self.records[r]
        inputs = self._row(r)
        text = record['text']
        if self.caption_drop and random.random() < self.caption_drop:
            text = ''
            inputs.update(self.empty_embeds())
        inputs['text'] = text
        meta = {k: record[k] for k in ('ori_shape', 'crop_top_left', 'flip',
                                       'bucket') if k in record}
        return dict(inputs=inputs, data_samples=dict(sample_idx=idx, **meta))

    def empty_embeds(self) -> Dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.empty.items()}

    def __getstate__(self):
        # Open shard handles do not cross into dataloader workers.
        state = dict(self.__dict__)
        state['_shards'] = {}
        return state
