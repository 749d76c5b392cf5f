"""Image-caption datasets over Hugging Face ``datasets``.

``dataset`` is a hub id (``lambdalabs/pokemon-blip-captions``) or a local
folder in ``imagefolder`` layout (images plus ``metadata.jsonl`` or
``metadata.csv`` with a ``file_name`` column). Images are decoded here, not
by ``datasets``, so a bad file is reported with its path and row.
"""
import io
import os.path as osp
from typing import Dict, Optional, Sequence

import numpy as np
from mmengine.dataset import Compose
from mmengine.logging import print_log
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from diffkd.registry import DATASETS
from diffkd.utils.hub import resolve_model_path


class DataError(ValueError):
    """Bad training data; the message names the file or row."""


def load_hf_dataset(dataset: str, split: str = 'train',
                    cache_dir: Optional[str] = None):
    import datasets as hfds
    path = resolve_model_path(dataset)
    if osp.isdir(path):
        has_meta = any(
            osp.exists(osp.join(path, m))
            for m in ('metadata.jsonl', 'metadata.csv'))
        if has_meta or not osp.exists(osp.join(path, 'dataset_dict.json')):
            return hfds.load_dataset(
                'imagefolder', data_dir=path, split=split,
                cache_dir=cache_dir)
        return hfds.load_from_disk(path)[split]
    return hfds.load_dataset(dataset, split=split, cache_dir=cache_dir)


def read_image(value, where: str) -> np.ndarray:
    """Decode an undecoded ``datasets.Image`` value to an RGB HWC array."""
    path = None
    try:
        if isinstance(value, dict):
            path = value.get('path')
            data = value.get('bytes')
            src = io.BytesIO(data) if data else path
        elif isinstance(value, str):
            path = value
            src = value
        elif isinstance(value, Image.Image):
            return np.asarray(value.convert('RGB'))
        else:
            raise DataError(f'{where}: unsupported image value of type '
                            f'{type(value).__name__}')
        if src is None:
            raise DataError(f'{where}: image has neither bytes nor a path')
        with Image.open(src) as im:
            im.load()
            return np.asarray(im.convert('RGB'))
    # DecompressionBombError: a small file that would decode to billions of
    # pixels (PIL refuses it) is bad data too, not a crash.
    except (UnidentifiedImageError, OSError, SyntaxError,
            Image.DecompressionBombError) as err:
        raise DataError(f'{where}: cannot read image '
                        f'{path or "<bytes>"}: {err}') from err


@DATASETS.register_module()
class HFImageTextDataset(Dataset):
    """Captioned images from ``datasets``, run through a transform pipeline.

    Args:
        dataset: hub id or local imagefolder.
        image_column / caption_column: column names.
        pipeline: list of transform configs.
        skip_invalid: replace an unreadable sample by the next readable one
            (with a counted warning) instead of stopping.
        max_samples: use only the first rows (quick experiments).
    """

    def __init__(self,
                 dataset: str,
                 split: str = 'train',
                 image_column: str = 'image',
                 caption_column: str = 'text',
                 pipeline: Sequence = (),
                 skip_invalid: bool = False,
                 max_samples: Optional[int] = None,
                 cache_dir: Optional[str] = None):
        import datasets as hfds
        self.name = dataset
        ds = load_hf_dataset(dataset, split, cache_dir)
        columns = list(ds.column_names)
        for role, col in (('image', image_column),
                          ('caption', caption_column)):
            if col not in columns:
                hint = (' (an imagefolder needs a metadata.jsonl or '
                        'metadata.csv next to the images)'
                        if role == 'caption' else '')
                raise DataError(
                    f'dataset {dataset!r}: {role} column {col!r} not found; '
                    f'available columns: {columns}{hint}')
        if max_samples is not None:
            ds = ds.select(range(min(max_samples, len(ds))))
        if len(ds) == 0:
            raise DataError(f'dataset {dataset!r} (split {split!r}) is empty')
        if isinstance(ds.features[image_column], hfds.Image):
            ds = ds.cast_column(image_column, hfds.Image(decode=False))
        self.data = ds
        self.image_column = image_column
        self.caption_column = caption_column
        self.pipeline = Compose(list(pipeline))
        self.skip_invalid = skip_invalid
        self.num_skipped = 0

    def __len__(self) -> int:
        return len(self.data)

    def get_data_info(self, idx: int) -> Dict:
        row = self.data[idx]
        where = f'dataset {self.name!r} row {idx}'
        caption = row[self.caption_column]
        if isinstance(caption, (list, tuple)):  # several captions: first
            caption = caption[0] if caption else None
        if not isinstance(caption, str) or not caption.strip():
            raise DataError(f'{where}: caption in column '
                            f'{self.caption_column!r} is empty or not text '
                            f'({caption!r})')
        img = read_image(row[self.image_column], where)
        return dict(
            img=img,
            text=caption,
            ori_shape=img.shape[:2],
            sample_idx=idx)

    def __getitem__(self, idx: int) -> Dict:
        for attempt in range(len(self)):
            i = (idx + attempt) % len(self)
            try:
                return self.pipeline(self.get_data_info(i))
            except DataError as err:
                if not self.skip_invalid:
                    raise
                self.num_skipped += 1
                print_log(
                    f'skipped unreadable sample ({self.num_skipped} so far): '
                    f'{err}',
                    logger='current',
                    level=30)
        raise DataError(f'dataset {self.name!r}: no readable sample at all')

