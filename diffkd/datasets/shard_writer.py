"""Write captioned images as WebDataset shards in img2dataset's layout.

``KEY.<ext>`` (the image file's bytes, unchanged when JPEG/PNG/WebP, else
re-encoded as PNG), ``KEY.txt`` (caption) and ``KEY.json`` (caption,
width, height, original_width, original_height, source file), plus
``manifest.json``: sample count, shards, a size histogram and the bucket
histogram of each bucket preset.

Shard ``i`` holds source rows ``[i * n, (i + 1) * n)``; each shard is
written to a temporary name and renamed when complete, and
``progress.json`` lists the complete ones, so a run interrupted at any
point resumes with the first incomplete shard
(``tools/dataset_converters/images_to_shards.py``).
"""
import csv
import io
import json
import os
import os.path as osp
from collections import Counter
from typing import Dict, Iterator, List, Optional, Sequence

from mmengine.logging import print_log

from .buckets import AspectRatioBuckets, image_size
from .image_io import DataError, read_image

MANIFEST = 'manifest.json'
PROGRESS = 'progress.json'
STORED = {'.jpg': 'jpg', '.jpeg': 'jpg', '.png': 'png', '.webp': 'webp'}
HISTOGRAM_STEP = 64  # px: the size histogram's bins


def imagefolder_rows(folder: str, image_column: str = 'file_name',
                     caption_column: str = 'text') -> Iterator[Dict]:
    """``{'where', 'path' | 'image', 'caption'}`` of each row of an
    imagefolder (``metadata.jsonl`` or ``metadata.csv``) or of a dataset
    saved with ``datasets``' ``save_to_disk`` (``dataset_dict.json`` or
    ``dataset_info.json``), in order."""
    jsonl, csv_path = (osp.join(folder, 'metadata.jsonl'),
                       osp.join(folder, 'metadata.csv'))
    if osp.isfile(jsonl) or osp.isfile(csv_path):
        if osp.isfile(jsonl):
            with open(jsonl, encoding='utf-8') as f:
                rows = [json.loads(line) for line in f if line.strip()]
            name = jsonl
        else:
            with open(csv_path, encoding='utf-8', newline='') as f:
                rows = list(csv.DictReader(f))
            name = csv_path
        for i, row in enumerate(rows):
            where = f'{name} row {i + 1}'
            for col in (image_column, caption_column):
                if col not in row:
                    raise DataError(f'{where}: no column {col!r} (has '
                                    f'{sorted(row)})')
            yield dict(where=where,
                       path=osp.join(folder, row[image_column]),
                       caption=row[caption_column])
        return
    import datasets as hfds
    if osp.isfile(osp.join(folder, 'dataset_dict.json')):
        ds = hfds.load_from_disk(folder)['train']
    elif osp.isfile(osp.join(folder, 'dataset_info.json')):
        ds = hfds.load_from_disk(folder)
    else:
        raise DataError(f'{folder}: neither an imagefolder (metadata.jsonl '
                        'or metadata.csv) nor a saved datasets folder')
    image_column = 'image' if image_column == 'file_name' else image_column
    ds = ds.cast_column(image_column, hfds.Image(decode=False))
    for i, row in enumerate(ds):
        yield dict(where=f'{folder} row {i}', image=row[image_column],
                   caption=row[caption_column])


def _sample(row: Dict, key: str) -> Dict:
    """The shard members of one row (raises DataError naming it)."""
    where = row['where']
    caption = row['caption']
    if isinstance(caption, (list, tuple)):
        caption = caption[0] if caption else None
    if not isinstance(caption, str) or not caption.strip():
        raise DataError(f'{where}: empty caption')
    if 'path' in row:
        path = row['path']
        ext = STORED.get(osp.splitext(path)[1].lower())
        try:
            with open(path, 'rb') as f:
                data = f.read()
        except OSError as err:
            raise DataError(f'{where}: cannot read {path}: {err}') from err
        source = path
    else:
        value = row['image']
        data, source = value.get('bytes'), value.get('path')
        if data is None and source:
            with open(source, 'rb') as f:
                data = f.read()
        ext = STORED.get(osp.splitext(source or '')[1].lower())
    try:
        h, w = image_size(data)
    except Exception as err:
        raise DataError(f'{where}: cannot read image {source}: {err}') \
            from err
    if ext is None:  # another format: re-encoded losslessly
        from PIL import Image
        buf = io.BytesIO()
        Image.fromarray(read_image(dict(bytes=data, path=source),
                                   where)).save(buf, 'PNG')
        data, ext = buf.getvalue(), 'png'
    meta = dict(caption=caption.strip(), width=w, height=h,
                original_width=w, original_height=h, source=source)
    return {'__key__': key, ext: data, 'txt': caption.strip().encode(),
            'json': json.dumps(meta).encode(), 'size': (h, w)}


def _read_json(path: str, default):
    if not osp.isfile(path):
        return default
    with open(path) as f:
        return json.load(f)


def _write_json(path: str, value) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(value, f, indent=1)
    os.replace(tmp, path)


def write_shards(rows: Iterator[Dict], out_dir: str,
                 samples_per_shard: int = 1000, prefix: str = '',
                 bucket_presets: Sequence[str] = ('sdxl', 'sd'),
                 stop_after_shards: Optional[int] = None) -> Dict:
    """Write ``rows`` (see :func:`imagefolder_rows`) as shards
    ``<out_dir>/<prefix>00000.tar``, ... and return the manifest.

    Rows that cannot be used are skipped and listed in the manifest.
    ``stop_after_shards`` stops after writing that many new shards (an
    interruption, for tests). Complete shards of an earlier run with the
    same ``samples_per_shard`` are kept, not rewritten.
    """
    import webdataset as wds
    os.makedirs(out_dir, exist_ok=True)
    progress_path = osp.join(out_dir, PROGRESS)
    progress = _read_json(progress_path, dict(
        samples_per_shard=samples_per_shard, shards=[]))
    if progress['samples_per_shard'] != samples_per_shard:
        raise ValueError(
            f'{out_dir} holds shards of {progress["samples_per_shard"]} '
            f'rows (see {PROGRESS}); resume with that samples_per_shard, or '
            'write to an empty folder')
    done = {s['index']: s for s in progress['shards']}
    written = 0
    shard: List[Dict] = []
    index = 0

    def flush():
        nonlocal written
        name = f'{prefix}{index:05d}.tar'
        tmp = osp.join(out_dir, f'.{name}.tmp')
        sizes, skipped = [], []
        with wds.TarWriter(tmp, mtime=0) as sink:
            for item in shard:
                if 'error' in item:
                    skipped.append(item['error'])
                    continue
                sizes.append(list(item.pop('size')))
                sink.write(item)
        os.replace(tmp, osp.join(out_dir, name))
        done[index] = dict(index=index, name=name, count=len(sizes),
                           sizes=sizes, skipped=skipped)
        progress['shards'] = [done[k] for k in sorted(done)]
        _write_json(progress_path, progress)
        written += 1

    for row_index, row in enumerate(rows):
        index = row_index // samples_per_shard
        if index in done:
            continue
        try:
            shard.append(_sample(row, f'{row_index:09d}'))
        except DataError as err:
            print_log(f'skipped: {err}', logger='current', level=30)
            shard.append(dict(error=str(err)))
        if len(shard) == samples_per_shard:
            flush()
            shard = []
            if stop_after_shards is not None and \
                    written >= stop_after_shards:
                return {}
    if shard:
        flush()
    return write_manifest(out_dir, progress, bucket_presets)


def write_manifest(out_dir: str, progress: Dict,
                   bucket_presets: Sequence[str]) -> Dict:
    shards = progress['shards']
    sizes = [tuple(s) for shard in shards for s in shard['sizes']]
    step = HISTOGRAM_STEP
    bins = Counter(
        f'{h // step * step}-{h // step * step + step - 1}x'
        f'{w // step * step}-{w // step * step + step - 1}'
        for h, w in sizes)
    manifest = dict(
        num_samples=len(sizes),
        num_skipped=sum(len(s['skipped']) for s in shards),
        skipped=[e for s in shards for e in s['skipped']],
        shards=[dict(name=s['name'], count=s['count']) for s in shards],
        pattern=_pattern([s['name'] for s in shards]),
        size_histogram=dict(sorted(bins.items())),
        bucket_histogram={
            p: AspectRatioBuckets.build(p).histogram(sizes)
            for p in bucket_presets},
    )
    _write_json(osp.join(out_dir, MANIFEST), manifest)
    return manifest


def _pattern(names: List[str]) -> str:
    """A brace pattern naming the shards (``{00000..00011}.tar``)."""
    if not names:
        return ''
    first, last = names[0], names[-1]
    head = first[:-len('00000.tar')]
    return (f'{head}{{{first[len(head):-4]}..{last[len(head):-4]}}}.tar'
            if len(names) > 1 else first)
