"""Reading a training image: the one place image files are decoded.

Every dataset (imagefolder / hub data, DreamBooth, and the latent cache,
which reads through its source dataset) goes through :func:`read_image`:

* size limits are checked from the header, before any pixel is decoded,
  so a small file that decodes to billions of pixels (or to a 1-pixel-wide
  sliver that a resize would blow up) costs nothing;
* the EXIF orientation is applied, so a photo taken sideways trains
  upright;
* every pixel format ends as 8-bit RGB the way it looks: 16-bit and 32-bit
  grayscale are scaled (not clipped), transparent pixels show white.
"""
import io
from typing import Callable, Optional, TypeVar

import numpy as np
from mmengine.logging import print_log
from PIL import Image, ImageOps, UnidentifiedImageError

# 8192x8192: a 67-megapixel photo is still read; its decoded RGB is
# 200 MB. SD/SDXL train at 512-1024 pixels, so larger images add nothing.
DEFAULT_MAX_IMAGE_PIXELS = 8192 * 8192
# Long side over short side. SDXL's widest buckets are 4:1, panoramas
# rarely pass 6:1; beyond 10:1 a resize to the training size makes an
# enormous image of a thin strip.
DEFAULT_MAX_ASPECT_RATIO = 10.0
# The white a viewer shows behind transparent pixels.
BACKGROUND = (255, 255, 255)
# Raised when the same file decodes to other pixels, so latent caches
# filled before are refused as stale. 2: EXIF orientation, 16-bit scaled,
# alpha over white (1: PIL's convert('RGB')).
IMAGE_READER_VERSION = 2

T = TypeVar('T')


class DataError(ValueError):
    """Bad training data; the message names the file or row."""


class OversizedImageError(DataError):
    """An image beyond the configured pixel or aspect-ratio limit."""


def _number(x: float) -> str:
    return f'{x:.2f}'.rstrip('0').rstrip('.')


def check_image_size(size, where: str, name: str,
                     max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
                     max_aspect_ratio: Optional[float] =
                     DEFAULT_MAX_ASPECT_RATIO) -> None:
    """Raise :class:`OversizedImageError` for a ``(width, height)`` beyond
    the limits (``None``: no limit)."""
    w, h = size
    fix = ('in the dataset config to train on it, or set '
           'skip_oversized=True to skip such images')
    if min(w, h) <= 0:
        raise DataError(f'{where}: image {name} is {w}x{h}: no pixels')
    if max_pixels is not None and w * h > max_pixels:
        raise OversizedImageError(
            f'{where}: image {name} is {w}x{h} ({w * h / 1e6:.3g} '
            f'megapixels), more than max_image_pixels={max_pixels} '
            f'({max_pixels / 1e6:.3g} megapixels); raise max_image_pixels '
            f'{fix}')
    ratio = max(w, h) / min(w, h)
    if max_aspect_ratio is not None and ratio > max_aspect_ratio:
        raise OversizedImageError(
            f'{where}: image {name} is {w}x{h}, an aspect ratio of '
            f'{_number(ratio)}:1, more than '
            f'max_aspect_ratio={max_aspect_ratio}; '
            f'raise max_aspect_ratio {fix}')


def to_rgb(im: Image.Image, where: str = '', name: str = '<image>'
           ) -> np.ndarray:
    """An image of any PIL mode as an HxWx3 uint8 array, as it looks.

    PIL's own ``convert('RGB')`` clips 16/32-bit grayscale to 255 (a
    16-bit PNG came out almost all white) and drops alpha, showing what
    is stored under transparent pixels (often black or noise).
    """
    mode = im.mode
    if mode.startswith('I'):  # I;16*: 16-bit PNG/TIFF; I: 32-bit integer
        values = np.asarray(im)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high > 65535:
            raise DataError(
                f'{where}: image {name} has {mode} pixels from {low} to '
                f'{high}; only 0..65535 (16-bit) is understood: save it as '
                '8- or 16-bit')
        gray = np.round(values.astype(np.float64) / 257.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == 'F':
        values = np.asarray(im)
        low, high = float(values.min()), float(values.max())
        if not (0.0 <= low and high <= 1.0):
            raise DataError(
                f'{where}: image {name} has floating-point pixels from '
                f'{low:.4g} to {high:.4g}; only 0..1 is understood: save it '
                'as 8- or 16-bit')
        gray = np.round(values.astype(np.float64) * 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if im.has_transparency_data:  # RGBA, LA, PA, P/L/RGB with tRNS
        rgba = im.convert('RGBA')
        back = Image.new('RGBA', rgba.size, BACKGROUND + (255, ))
        return np.asarray(Image.alpha_composite(back, rgba).convert('RGB'))
    return np.asarray(im.convert('RGB'))


def read_image(value,
               where: str,
               max_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
               max_aspect_ratio: Optional[float] = DEFAULT_MAX_ASPECT_RATIO
               ) -> np.ndarray:
    """Decode an image to an upright RGB HWC uint8 array.

    ``value``: a path, an undecoded ``datasets.Image`` value (``{'bytes',
    'path'}``) or a PIL image. ``where`` names the row in errors.
    """
    path = None
    try:
        if isinstance(value, Image.Image):
            # Already decoded (by ``datasets``): the limits still hold,
            # for what the transforms would make of it.
            check_image_size(value.size, where, '<decoded>', max_pixels,
                             max_aspect_ratio)
            return to_rgb(ImageOps.exif_transpose(value), where,
                          '<decoded>')
        if isinstance(value, dict):
            path = value.get('path')
            data = value.get('bytes')
            src = io.BytesIO(data) if data else path
        elif isinstance(value, str):
            path = src = value
        else:
            raise DataError(f'{where}: unsupported image value of type '
                            f'{type(value).__name__}')
        if src is None:
            raise DataError(f'{where}: image has neither bytes nor a path')
        name = path or '<bytes>'
        with Image.open(src) as im:  # reads the header only
            check_image_size(im.size, where, name, max_pixels,
                             max_aspect_ratio)
            im.load()
            ImageOps.exif_transpose(im, in_place=True)
            return to_rgb(im, where, name)
    except DataError:
        raise
    # DecompressionBombError: PIL's own limit (Image.MAX_IMAGE_PIXELS x 2),
    # checked when the file is opened, also applies. ValueError: a mode PIL
    # cannot convert to RGB.
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as err:
        raise DataError(f'{where}: cannot read image '
                        f'{path or "<bytes>"}: {err}') from err


class ImageReader:
    """:func:`read_image` with a dataset's limits, and its policy for rows
    that cannot be used.

    Args:
        max_image_pixels: refuse images with more pixels (None: no limit).
        max_aspect_ratio: refuse images whose long side is more than this
            many times the short side (None: no limit).
        skip_invalid: replace any unusable row (unreadable or oversized)
            by the next usable one, with a counted warning.
        skip_oversized: the same for oversized rows only.
    """

    def __init__(self,
                 max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
                 max_aspect_ratio: Optional[float] = DEFAULT_MAX_ASPECT_RATIO,
                 skip_invalid: bool = False,
                 skip_oversized: bool = False):
        for key, limit in (('max_image_pixels', max_image_pixels),
                           ('max_aspect_ratio', max_aspect_ratio)):
            if limit is not None and not limit > 0:
                raise ValueError(f'{key} must be positive or None, got '
                                 f'{limit!r}')
        if max_aspect_ratio is not None and max_aspect_ratio < 1:
            raise ValueError(f'max_aspect_ratio is long side / short side, '
                             f'at least 1; got {max_aspect_ratio!r}')
        self.max_image_pixels = max_image_pixels
        self.max_aspect_ratio = max_aspect_ratio
        self.skip_invalid = skip_invalid
        self.skip_oversized = skip_oversized
        self.num_skipped = 0

    def read(self, value, where: str) -> np.ndarray:
        return read_image(value, where, self.max_image_pixels,
                          self.max_aspect_ratio)

    def first_usable(self, start: int, count: int,
                     sample: Callable[[int], T], what: str) -> T:
        """``sample(start)``, or where that row is skipped, the first
        usable row after it (wrapping around)."""
        for attempt in range(count):
            i = (start + attempt) % count
            try:
                return sample(i)
            except DataError as err:
                oversized = isinstance(err, OversizedImageError)
                if not (self.skip_invalid or
                        (oversized and self.skip_oversized)):
                    raise
                self.num_skipped += 1
                kind = 'oversized image' if oversized else 'unusable sample'
                print_log(
                    f'skipped {kind} ({self.num_skipped} so far): '
                    f'{err}',
                    logger='current',
                    level=30)
        raise DataError(f'{what}: no usable image at all')
