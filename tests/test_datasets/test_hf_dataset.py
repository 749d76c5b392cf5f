import csv
import json
import os

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

from diffkd.datasets import DataError
from diffkd.registry import DATASETS

PIPELINE = [
    dict(type='ResizeShortEdge', size=16),
    dict(type='CenterCropWithCoords', size=16),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text']),
]


def make_folder(root, n=4, meta='jsonl', caption_key='text', bad=()):
    os.makedirs(root, exist_ok=True)
    rows = []
    for i in range(n):
        name = f'{i}.png'
        if i in bad:
            with open(os.path.join(root, name), 'wb') as f:
                f.write(b'not a png at all')
        else:
            Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(
                os.path.join(root, name))
        rows.append({'file_name': name, caption_key: f'caption {i}'})
    if meta == 'jsonl':
        with open(os.path.join(root, 'metadata.jsonl'), 'w') as f:
            for r in rows:
                f.write(json.dumps(r) + '\n')
    elif meta == 'csv':
        with open(os.path.join(root, 'metadata.csv'), 'w', newline='') as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    return str(root)


def build(**kw):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return DATASETS.build(dict(type='HFImageTextDataset',
                                   pipeline=PIPELINE, **kw))


@pytest.mark.parametrize('meta', ['jsonl', 'csv'])
def test_imagefolder_with_metadata(tmp_path, meta):
    ds = build(dataset=make_folder(tmp_path / meta, meta=meta))
    assert len(ds) == 4
    for i in range(len(ds)):
        item = ds[i]
        assert item['inputs']['img'].shape == (3, 16, 16)
        # Captions stay with their own image.
        stem = os.path.basename(ds.data[i]['image']['path'])[:-len('.png')]
        assert item['inputs']['text'] == f'caption {stem}'


def test_custom_caption_column(tmp_path):
    root = make_folder(tmp_path / 'c', caption_key='prompt')
    assert build(dataset=root, caption_column='prompt')[0]['inputs']['text']
    with pytest.raises(DataError, match=r"caption column 'text' not found.*"
                       r"prompt"):
        build(dataset=root)


def test_missing_metadata_is_explained(tmp_path):
    root = make_folder(tmp_path / 'nometa', meta=None)
    with pytest.raises(DataError, match='metadata.jsonl'):
        build(dataset=root)


def test_empty_dataset(tmp_path):
    root = make_folder(tmp_path / 'empty', n=2)
    with pytest.raises(DataError, match='has no rows|is empty'):
        build(dataset=root, split='train', max_samples=0)


def test_unreadable_image_names_file_and_row(tmp_path):
    ds = build(dataset=make_folder(tmp_path / 'bad', bad=(1, )))
    row = [i for i in range(len(ds))
           if ds.data[i]['image']['path'].endswith('1.png')][0]
    with pytest.raises(DataError, match=rf'row {row}: cannot read image '
                       r'.*1\.png'):
        ds[row]


def test_skip_invalid_counts_and_replaces(tmp_path):
    ds = build(dataset=make_folder(tmp_path / 'skip', bad=(1, 2)),
               skip_invalid=True)
    items = [ds[i] for i in range(len(ds))]
    assert all(it['inputs']['img'].shape == (3, 16, 16) for it in items)
    # ds[1] skips rows 1 and 2, ds[2] skips row 2 again: three skips.
    assert ds.num_skipped == 3
    assert [it['inputs']['text'] for it in items] == [
        'caption 0', 'caption 3', 'caption 3', 'caption 3']


def test_dataset_saved_with_save_to_disk(tmp_path):
    import datasets as hfds
    images = [Image.fromarray(np.full((20, 20, 3), 60 * i, np.uint8))
              for i in range(3)]
    ds = hfds.Dataset.from_dict(
        {'picture': images, 'prompt': [f'p{i}' for i in range(3)]},
        features=hfds.Features({'picture': hfds.Image(),
                                'prompt': hfds.Value('string')}))
    hfds.DatasetDict(train=ds).save_to_disk(str(tmp_path / 'saved'))
    built = build(dataset=str(tmp_path / 'saved'), image_column='picture',
                  caption_column='prompt')
    assert [built[i]['inputs']['text'] for i in range(3)] == ['p0', 'p1',
                                                              'p2']
