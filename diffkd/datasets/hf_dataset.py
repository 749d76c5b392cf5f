"""Image-caption datasets over Hugging Face ``datasets``.

``dataset`` is a hub id (``lambdalabs/pokemon-blip-captions``) or a local
folder in ``imagefolder`` layout (images plus ``metadata.jsonl`` or
``metadata.csv`` with a ``file_name`` column). Images are decoded by
:mod:`diffkd.datasets.image_io`, not by ``datasets``, so a bad file is
reported with its path and row.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

from mmengine.dataset import Compose
from torch.utils.data import Dataset

from diffkd.registry import DATASETS
from diffkd.utils.hub import resolve_model_path
from .image_io import (DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_IMAGE_PIXELS,
                       DataError, ImageReader, read_image)

__all__ = ['DataError', 'HFImageTextDataset', 'load_hf_dataset',
           'read_image']

METADATA_FILES = ('metadata.jsonl', 'metadata.csv')


def load_hf_dataset(dataset: str, split: str = 'train',
                    cache_dir: Optional[str] = None):
    import datasets as hfds
    path = resolve_model_path(dataset)
    if osp.isdir(path):
        has_meta = any(
            osp.exists(osp.join(path, m)) for m in METADATA_FILES)
        if has_meta or not osp.exists(osp.join(path, 'dataset_dict.json')):
            try:
                return hfds.load_dataset(
                    'imagefolder', data_dir=path, split=split,
                    cache_dir=cache_dir)
            except Exception as err:
                problem = _not_utf8(path) if _caused_by(
                    err, UnicodeDecodeError) else None
                if problem:
                    raise DataError(f'dataset {dataset!r}: {problem}') \
                        from err
                raise
        return hfds.load_from_disk(path)[split]
    return hfds.load_dataset(dataset, split=split, cache_dir=cache_dir)


def _caused_by(err: BaseException, kind: type) -> bool:
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, kind):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def _not_utf8(folder: str) -> Optional[str]:
    """The first metadata file under ``folder`` that is not UTF-8, with the
    line and column (``datasets`` says only "An error occurred while
    generating the dataset")."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name not in METADATA_FILES:
                continue
            path = osp.join(root, name)
            with open(path, 'rb') as f:
                # UTF-8 never uses the newline byte inside a character.
                for lineno, line in enumerate(f, 1):
                    try:
                        line.decode('utf-8')
                    except UnicodeDecodeError as err:
                        column = len(line[:err.start].decode('utf-8')) + 1
                        return (f'{path} line {lineno} is not valid UTF-8 '
                                f'(byte 0x{line[err.start]:02x} at column '
                                f'{column}); save the file as UTF-8')
    return None


@DATASETS.register_module()
class HFImageTextDataset(Dataset):
    """Captioned images from ``datasets``, run through a transform pipeline.

    Args:
        dataset: hub id or local imagefolder.
        image_column / caption_column: column names.
        pipeline: list of transform configs.
        skip_invalid: replace an unusable sample (unreadable or oversized
            image) by the next usable one (with a counted warning) instead
            of stopping.
        max_samples: use only the first rows (quick experiments).
        max_image_pixels: refuse (or with ``skip_oversized`` skip) images
            with more pixels, checked before decoding; None: no limit.
        max_aspect_ratio: the same for long side / short side.
        skip_oversized: skip oversized images (counted, logged) instead of
            stopping; unreadable images still stop the run.
    """

    def __init__(self,
                 dataset: str,
                 split: str = 'train',
                 image_column: str = 'image',
                 caption_column: str = 'text',
                 pipeline: Sequence = (),
                 skip_invalid: bool = False,
                 max_samples: Optional[int] = None,
                 cache_dir: Optional[str] = None,
                 max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
                 max_aspect_ratio: Optional[float] = DEFAULT_MAX_ASPECT_RATIO,
                 skip_oversized: bool = False):
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
        self.reader = ImageReader(max_image_pixels, max_aspect_ratio,
                                  skip_invalid, skip_oversized)

    @property
    def num_skipped(self) -> int:
        """Rows skipped so far (in this process)."""
        return self.reader.num_skipped

    def __len__(self) -> int:
        return len(self.data)

    def image_sizes(self) -> List[Tuple[int, int]]:
        """``(height, width)`` of every image as it will be read (EXIF
        orientation applied), from the headers only: what
        ``BucketBatchSampler`` groups by. An unreadable image counts as
        square here; reading it later reports it."""
        from .buckets import image_size
        sizes = []
        for value in self.data[self.image_column]:
            try:
                if isinstance(value, dict) and value.get('bytes'):
                    sizes.append(image_size(value['bytes']))
                else:
                    path = value.get('path') if isinstance(value, dict) \
                        else value
                    sizes.append(image_size(path))
            except Exception:
                sizes.append((1, 1))
        return sizes

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
        img = self.reader.read(row[self.image_column], where)
        return dict(
            img=img,
            text=caption,
            ori_shape=img.shape[:2],
            sample_idx=idx)

    def __getitem__(self, idx: int) -> Dict:
        return self.reader.first_usable(
            idx, len(self), lambda i: self.pipeline(self.get_data_info(i)),
            f'dataset {self.name!r}')
