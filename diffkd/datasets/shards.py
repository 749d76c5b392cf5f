"""Streaming image-caption data from WebDataset tar shards.

The shard layout is img2dataset's: each sample is ``KEY.jpg`` (or
``.jpeg``/``.png``/``.webp``) with ``KEY.txt`` and/or ``KEY.json`` (the
caption, and img2dataset's ``original_width``/``original_height``, which
become SDXL's original size). Shards are local paths or globs, brace
patterns (``data/laion/{00000..00211}.tar``), ``::``-joined lists, URLs
``webdataset.gopen`` opens (``pipe:``, ``http(s)://``, ``gs://``, ...)
and any other fsspec URL (``s3://``, ...).

How one epoch is read (:class:`WebDatasetShards`):

1. the shard list is shuffled with ``(seed, epoch)`` and dealt out: shard
   ``i`` goes to reader ``i % (world_size * num_workers)``, reader
   ``rank * num_workers + worker``; every shard is read by exactly one
   dataloader worker of one rank, so ranks see disjoint samples and,
   together, all of them;
2. each worker reads its shards through ``webdataset``'s tar reader,
   shuffles samples in a buffer (``shuffle_buffer``) with its own seeded
   generator, and puts each into its aspect-ratio bucket's buffer (the
   size comes from the image header; nothing is decoded yet);
3. a full bucket becomes a batch: only then are its images decoded (by
   :mod:`~diffkd.datasets.image_io`, the one reader) and transformed, and
   the batch is collated in the worker.

The remainder: a bucket's last incomplete batch of an epoch is dropped
(fewer than ``batch_size`` samples per bucket, per worker and epoch), so
every batch is full and of one shape. In ``infinite`` mode (the default,
for iteration-based training) a worker goes on to its next epoch by
itself; otherwise the iterator ends with the epoch.

Faults: a sample that cannot be used (unreadable or oversized image, no
caption, no image member) or a shard that cannot be read to its end
(truncated, missing) is skipped, counted and logged with the shard and
key; with ``fatal=True`` it stops the run with that message instead.

Resuming: every batch carries its position (``batch['stream']``) and
:class:`~diffkd.engine.hooks.StreamPositionHook` saves the last position
the training loop consumed from each worker of each rank; a resumed run
continues each worker's stream after it (see :meth:`load_state_dict`).
"""
import json
import logging
import os.path as osp
import random
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from mmengine.dataset import Compose
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from torch.utils.data import IterableDataset, default_collate, \
    get_worker_info

from diffkd.registry import DATASETS, FUNCTIONS
from .buckets import BucketBatcher, pipeline_buckets
from .image_io import (DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_IMAGE_PIXELS,
                       DataError, check_image_size, read_image)

IMAGE_EXTENSIONS = ('jpg', 'jpeg', 'png', 'webp')


class ShardError(DataError):
    """A shard or one of its samples could not be used (``fatal=True``)."""


def expand_shards(shards) -> List[str]:
    """A list of shard URLs from a pattern or a list of patterns: braces
    (``{00000..00211}.tar``), ``::``-joined lists (webdataset's
    ``expand_urls``), or a local glob (``data/laion/*.tar``, sorted: the
    count img2dataset wrote need not be known)."""
    import glob

    from webdataset.shardlists import expand_urls

    from diffkd.utils.hub import TOY_PREFIX, resolve_model_path
    patterns = [shards] if isinstance(shards, str) else list(shards)
    urls: List[str] = []
    for pattern in patterns:
        for part in pattern.split('::'):
            if part.startswith(TOY_PREFIX):  # diffkd-toy/<asset>/<files>
                asset, _, rest = part[len(TOY_PREFIX):].partition('/')
                part = osp.join(resolve_model_path(TOY_PREFIX + asset), rest)
            if '://' not in part and not part.startswith('pipe:') and any(
                    c in part for c in '*?['):
                urls.extend(sorted(glob.glob(osp.expanduser(part))))
            else:
                urls.extend(expand_urls(part))
    return urls


def split_shards(urls: Sequence[str], rank: int, world_size: int,
                 worker: int, num_workers: int) -> List[str]:
    """The shards one dataloader worker of one rank reads: every
    ``world_size * num_workers``-th, from ``rank * num_workers + worker``."""
    readers = world_size * num_workers
    return list(urls[rank * num_workers + worker::readers])


def epoch_order(urls: Sequence[str], seed: int, epoch: int,
                shuffle: bool) -> List[str]:
    """The shard order of an epoch: the same on every rank and worker."""
    urls = list(urls)
    if shuffle:
        random.Random(f'{seed}:{epoch}').shuffle(urls)
    return urls


def count_samples(urls: Sequence[str]) -> Optional[int]:
    """Samples in the shards, from the ``manifest.json`` of their folder
    (``images_to_shards.py``) or img2dataset's ``<shard>_stats.json``
    (``successes``); None when a shard's count is not recorded."""
    manifests: Dict[str, Dict[str, int]] = {}
    total = 0
    for url in urls:
        folder, name = osp.split(url)
        if folder not in manifests:
            path = osp.join(folder, 'manifest.json')
            counts = {}
            if osp.isfile(path):
                with open(path) as f:
                    counts = {s['name']: s['count']
                              for s in json.load(f).get('shards', [])}
            manifests[folder] = counts
        if name in manifests[folder]:
            total += manifests[folder][name]
            continue
        stats = osp.splitext(url)[0] + '_stats.json'
        if not osp.isfile(stats):
            return None
        with open(stats) as f:
            total += int(json.load(f).get('successes', 0))
    return total


def read_shard(url: str) -> Iterator[Tuple[str, Dict[str, bytes]]]:
    """``(key, {extension: bytes})`` of each sample in one tar shard, in
    order, read with ``webdataset``; errors (truncated or unreadable
    shard) propagate."""
    from urllib.parse import urlparse

    from webdataset.gopen import gopen, gopen_schemes
    from webdataset.handlers import reraise_exception
    from webdataset.tariterators import base_plus_ext, tar_file_iterator
    scheme = urlparse(url).scheme
    if scheme not in ('', 'file') and scheme not in gopen_schemes:
        import fsspec  # s3://, gcs://, memory://, ...: fsspec's filesystems
        stream = fsspec.open(url, 'rb').open()
    else:
        stream = gopen(url)
    try:
        key, members = None, {}
        for member in tar_file_iterator(stream, handler=reraise_exception):
            prefix, ext = base_plus_ext(member['fname'])
            if prefix is None:
                continue
            if prefix != key:
                if members:
                    yield key, members
                key, members = prefix, {}
            members[ext.lower()] = member['data']
        if members:
            yield key, members
    finally:
        stream.close()


def parse_sample(url: str, key: str, members: Dict[str, bytes],
                 max_pixels=DEFAULT_MAX_IMAGE_PIXELS,
                 max_aspect_ratio=DEFAULT_MAX_ASPECT_RATIO) -> Dict:
    """The caption, image bytes, stored size and original size of one
    sample, from the headers only. Raises :class:`DataError` naming the
    shard and key."""
    from .buckets import image_size
    where = f'shard {url} key {key}'
    ext = next((e for e in IMAGE_EXTENSIONS if e in members), None)
    if ext is None:
        raise DataError(f'{where}: no image member (has '
                        f'{sorted(members)}; expected one of '
                        f'{list(IMAGE_EXTENSIONS)})')
    meta = {}
    if 'json' in members:
        try:
            meta = json.loads(members['json'].decode('utf-8'))
        except (UnicodeDecodeError, ValueError) as err:
            raise DataError(f'{where}: {key}.json is not JSON: {err}') \
                from err
        if not isinstance(meta, dict):
            raise DataError(f'{where}: {key}.json is not an object')
    caption = None
    if 'txt' in members:
        try:
            caption = members['txt'].decode('utf-8').strip()
        except UnicodeDecodeError as err:
            raise DataError(f'{where}: {key}.txt is not UTF-8: {err}') \
                from err
    if not caption:
        caption = meta.get('caption')
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f'{where}: no caption ({key}.txt or "caption" in '
                        f'{key}.json)')
    data = members[ext]
    try:
        h, w = image_size(data)
    except Exception as err:  # PIL raises many kinds on a bad header
        raise DataError(f'{where}: cannot read image {key}.{ext}: {err}') \
            from err
    check_image_size((w, h), where, f'{key}.{ext}', max_pixels,
                     max_aspect_ratio)
    ori = (h, w)
    ow, oh = meta.get('original_width'), meta.get('original_height')
    if isinstance(ow, int) and isinstance(oh, int) and ow > 0 and oh > 0:
        ori = (oh, ow)  # before img2dataset resized it
    return dict(key=key, url=url, ext=ext, data=data, text=caption.strip(),
                size=(h, w), ori_shape=ori)


@FUNCTIONS.register_module()
def stream_collate(item: Dict) -> Dict:
    """Collate one :class:`WebDatasetShards` item (``batch_size=None`` in
    the dataloader: the dataset batches): ``default_collate`` of its
    samples, with its stream position under ``'stream'``."""
    samples = item['samples']
    batch = default_collate(samples) if samples else {}
    batch['stream'] = item['stream']
    return batch


@DATASETS.register_module()
class WebDatasetShards(IterableDataset):
    """Captioned images streamed from WebDataset shards, batched per
    aspect-ratio bucket (see the module docstring).

    Use it with ``batch_size=None``, ``sampler=None`` and
    ``collate_fn=dict(type='diffkd.stream_collate')`` in the dataloader: the
    dataset makes the batches.

    Args:
        shards: pattern(s) of shard URLs.
        batch_size: samples per batch (per rank).
        pipeline: transforms of one sample (``img``, ``text``,
            ``ori_shape``, ``key``); with ``BucketResizeCrop`` batches are
            formed per bucket, else every sample must come out the same
            shape.
        shuffle_buffer: samples a worker shuffles among (0: shard order).
        shuffle_shards: shuffle the shard order each epoch.
        infinite: go on with the next epoch (iteration-based training);
            else stop after one (one pass, e.g. for a tool: a new
            iterator starts at epoch 0 again).
        seed: of the shard and sample shuffles.
        fatal: stop at the first unusable sample or shard, naming it,
            instead of skipping it.
        max_image_pixels / max_aspect_ratio: image limits (image_io).
        num_samples: samples in all shards, for ``len()`` (batches per
            epoch and rank, which mmengine's schedulers ask for); default:
            read from the shards' ``manifest.json``
            (``images_to_shards.py``) or img2dataset's ``*_stats.json``.

    Each sample reaches the pipeline with ``key`` and ``shard`` (its URL)
    besides ``img``, ``text`` and ``ori_shape``: name them in
    ``PackInputs(meta_keys=...)`` to keep them in the batch.
    """

    def __init__(self,
                 shards,
                 batch_size: int,
                 pipeline: Sequence = (),
                 shuffle_buffer: int = 1000,
                 shuffle_shards: bool = True,
                 infinite: bool = True,
                 seed: int = 0,
                 fatal: bool = False,
                 max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
                 max_aspect_ratio: Optional[float] = DEFAULT_MAX_ASPECT_RATIO,
                 num_samples: Optional[int] = None):
        self.shards = expand_shards(shards)
        if not self.shards:
            raise DataError(
                f'WebDatasetShards: {shards!r} names no shard (a glob that '
                'matches no file?); build shards with img2dataset '
                '(--output_format webdataset) or '
                'tools/dataset_converters/images_to_shards.py')
        missing = [u for u in self.shards
                   if '://' not in u and not u.startswith('pipe:')
                   and not osp.exists(u)]
        if missing and len(missing) == len(self.shards):
            raise DataError(
                f'WebDatasetShards: no shard of {shards!r} exists (first: '
                f'{missing[0]}); build shards with '
                'tools/dataset_converters/images_to_shards.py')
        self.batch_size = batch_size
        self.pipeline = Compose(list(pipeline))
        self.buckets = pipeline_buckets(self.pipeline.transforms)
        self.shuffle_buffer = shuffle_buffer
        self.shuffle_shards = shuffle_shards
        self.infinite = infinite
        self.seed = seed
        self.fatal = fatal
        self.max_image_pixels = max_image_pixels
        self.max_aspect_ratio = max_aspect_ratio
        self.num_skipped = 0
        self.num_samples = num_samples if num_samples is not None else \
            count_samples(self.shards)
        # {(rank, worker): position} to continue from (load_state_dict).
        self._resume: Dict[Tuple[int, int], Dict] = {}
        self._built_on = get_dist_info()

    def __len__(self) -> int:
        """Batches per epoch of this rank, about (each bucket's last
        incomplete batch is dropped); the stream itself may be infinite."""
        if self.num_samples is None:
            raise TypeError(
                'WebDatasetShards: the number of samples is unknown (no '
                'manifest.json of tools/dataset_converters/'
                'images_to_shards.py and no img2dataset *_stats.json next '
                'to the shards); set num_samples in the dataset config')
        _, world = get_dist_info()
        return max(1, self.num_samples // (self.batch_size * world))

    # ------------------------------------------------------------ faults
    def _fault(self, err: Exception, url: str, key: Optional[str]):
        where = f'shard {url}' + (f' key {key}' if key else '')
        message = str(err) if str(err).startswith('shard ') else \
            f'{where}: {type(err).__name__}: {err}'
        if self.fatal:
            raise ShardError(f'{message} (fatal=True; set fatal=False to '
                             'skip and count such samples)') from err
        self.num_skipped += 1
        print_log(f'skipped ({self.num_skipped} so far in this worker): '
                  f'{message}', logger='current', level=logging.WARNING)

    def _raw_samples(self, urls: Sequence[str]) -> Iterator[Dict]:
        for url in urls:
            key = None
            try:
                for key, members in read_shard(url):
                    try:
                        yield parse_sample(url, key, members,
                                           self.max_image_pixels,
                                           self.max_aspect_ratio)
                    except DataError as err:
                        self._fault(err, url, key)
            except ShardError:
                raise
            except Exception as err:  # truncated/missing: rest of shard
                after = f' (after key {key})' if key else ''
                self._fault(
                    DataError(f'shard {url}: cannot be read to its end'
                              f'{after}: {type(err).__name__}: {err}'),
                    url, None)

    # ----------------------------------------------------------- batches
    def epoch_batches(self, epoch: int, rank: int, world_size: int,
                      worker: int, num_workers: int) -> Iterator[List[Dict]]:
        """The raw (undecoded) batches one worker forms in one epoch; a
        pure function of its arguments and the shards' contents."""
        from webdataset.filters import shuffle
        urls = split_shards(
            epoch_order(self.shards, self.seed, epoch, self.shuffle_shards),
            rank, world_size, worker, num_workers)
        samples = self._raw_samples(urls)
        if self.shuffle_buffer > 1:
            rng = random.Random(f'{self.seed}:{epoch}:{rank}:{worker}')
            samples = shuffle(self.shuffle_buffer,
                              min(100, self.shuffle_buffer), rng=rng)(samples)
        batcher = BucketBatcher(self.batch_size)
        for sample in samples:
            bucket = self.buckets.assign(*sample['size']) \
                if self.buckets else None
            batch = batcher.add(bucket, sample)
            if batch is not None:
                yield batch

    def _decode(self, raw: Dict) -> Optional[Dict]:
        where = f'shard {raw["url"]} key {raw["key"]}'
        try:
            img = read_image(dict(bytes=raw['data'],
                                  path=f'{raw["key"]}.{raw["ext"]}'),
                             where, self.max_image_pixels,
                             self.max_aspect_ratio)
            return self.pipeline(dict(img=img, text=raw['text'],
                                      ori_shape=raw['ori_shape'],
                                      key=raw['key'], shard=raw['url']))
        except DataError as err:
            self._fault(err, raw['url'], raw['key'])
            return None

    def _where(self) -> Tuple[int, int, int, int]:
        info = get_worker_info()
        rank, world = get_dist_info()
        if info is not None and world == 1:
            # A worker may not see the process group: the rank it was
            # built on then stands.
            rank, world = self._built_on
        worker, num_workers = (info.id, info.num_workers) if info else (0, 1)
        return rank, world, worker, num_workers

    def __iter__(self) -> Iterator[Dict]:
        rank, world, worker, num_workers = self._where()
        if len(self.shards) < world * num_workers and worker == 0:
            print_log(
                f'WebDatasetShards: {len(self.shards)} shard(s) for '
                f'{world} rank(s) x {num_workers} worker(s): some workers '
                'read nothing; write more, smaller shards', logger='current',
                level=logging.WARNING)
        state = self._resume.get((rank, worker))
        epoch, skip, count = 0, 0, 0
        if state is not None:
            epoch, skip, count = (state['epoch'], state['index'] + 1,
                                  state['count'])
            # The training loop pulls (and drops) as many batches as it
            # trained before: those are answered without reading anything.
            for n in range(count):
                yield dict(samples=None, stream=dict(
                    rank=rank, worker=worker, epoch=-1, index=-1,
                    count=n + 1, placeholder=True))
        if not split_shards(self.shards, rank, world, worker, num_workers):
            return  # a reader without shards: the others carry on
        while True:
            formed = 0
            for index, raw in enumerate(self.epoch_batches(
                    epoch, rank, world, worker, num_workers)):
                formed += 1
                if index < skip:
                    continue
                samples = [s for s in map(self._decode, raw) if s is not None]
                if not samples:
                    continue
                count += 1
                yield dict(samples=samples, stream=dict(
                    rank=rank, worker=worker, epoch=epoch, index=index,
                    count=count, placeholder=False))
            if not self.infinite:
                return
            if not formed:
                print_log(
                    f'WebDatasetShards: rank {rank} worker {worker} formed '
                    f'no batch of {self.batch_size} in epoch {epoch} (every '
                    'sample skipped, or too few per bucket); it stops',
                    logger='current', level=logging.WARNING)
                return
            skip = 0
            epoch += 1

    # ---------------------------------------------------------- resuming
    def load_state_dict(self, state: Dict) -> None:
        """Continue from saved stream positions: ``{'positions':
        [{rank, worker, epoch, index, count}, ...], 'num_workers': n,
        'world_size': w}``. Each worker first yields ``count``
        placeholders (the batches the training loop skips on resume),
        then its stream after batch ``index`` of ``epoch``."""
        self._resume = {(p['rank'], p['worker']): p
                        for p in state.get('positions', [])}
