"""DreamBooth: a few instance images under one prompt, with optional prior
preservation.

Each item is one instance sample and, with a class prompt, one class sample.
:func:`dreambooth_collate` puts the instance samples first and the class
samples after them *along the batch axis*, each with its own prompt, plus an
``is_prior`` mask; the model then draws one timestep per row and splits the
loss by the mask, so the two halves never get mixed up.

Class images come from ``class_data_dir`` and, when there are fewer than
``num_class_images``, the missing ones are generated once with the base
model (with a progress bar) and kept there for the next run.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.dataset import Compose, default_collate
from mmengine.logging import print_log
from torch.utils.data import Dataset

from diffkd.registry import DATASETS, FUNCTIONS
from diffkd.utils.hub import diffkd_home, resolve_model_path
from .hf_dataset import load_hf_dataset
from .image_io import (DEFAULT_MAX_ASPECT_RATIO, DEFAULT_MAX_IMAGE_PIXELS,
                       DataError, ImageReader, read_image)

__all__ = ['DreamBoothDataset', 'dreambooth_collate',
           'generate_class_images', 'read_image']

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')
CLASS_INFO = 'class_images.json'


def list_images(folder: str) -> List[str]:
    return sorted(
        osp.join(folder, name) for name in os.listdir(folder)
        if name.lower().endswith(IMAGE_EXTENSIONS))


def _instance_images(source: str, image_column: str) -> List:
    """Image values (paths or ``datasets`` image dicts) of the instances."""
    path = resolve_model_path(source)
    if osp.isdir(path) and not any(
            osp.exists(osp.join(path, f))
            for f in ('metadata.jsonl', 'metadata.csv', 'dataset_dict.json')):
        images = list_images(path)
    else:
        import datasets as hfds
        ds = load_hf_dataset(source)
        if image_column not in ds.column_names:
            raise DataError(f'instance data {source!r}: image column '
                            f'{image_column!r} not found; available '
                            f'columns: {ds.column_names}')
        if isinstance(ds.features[image_column], hfds.Image):
            ds = ds.cast_column(image_column, hfds.Image(decode=False))
        images = list(ds[image_column])
    if not images:
        raise DataError(f'instance data {source!r} has no images '
                        f'(looked for {", ".join(IMAGE_EXTENSIONS)})')
    return images


def generate_class_images(out_dir: str,
                          prompt: str,
                          num_images: int,
                          model: str,
                          unet: Optional[str] = None,
                          num_inference_steps: int = 25,
                          guidance_scale: float = 7.5,
                          height: Optional[int] = None,
                          width: Optional[int] = None,
                          batch_size: int = 4,
                          seed: int = 0) -> List[str]:
    """Make sure ``out_dir`` holds ``num_images`` images of ``prompt``.

    Existing images are kept; only the missing ones are generated, each
    written atomically, so an interrupted run resumes where it stopped.
    Image ``i`` always comes from seed ``seed + i``.
    """
    os.makedirs(out_dir, exist_ok=True)
    info_file = osp.join(out_dir, CLASS_INFO)
    if osp.exists(info_file):
        with open(info_file) as f:
            recorded = json.load(f).get('prompt')
        if recorded != prompt:
            raise DataError(
                f'{info_file}: class images of {recorded!r}, but the class '
                f'prompt is {prompt!r}; use another class_data_dir or empty '
                f'this one')
    existing = list_images(out_dir)
    missing = num_images - len(existing)
    if missing <= 0:
        return existing[:num_images]
    pipe = _generation_pipeline(model, unet)
    print_log(
        f'generating {missing} class images of {prompt!r} with {model} '
        f'into {out_dir} (kept for later runs)',
        logger='current')
    with open(info_file + '.tmp', 'w') as f:
        json.dump(dict(prompt=prompt, model=model, unet=unet,
                       num_inference_steps=num_inference_steps,
                       guidance_scale=guidance_scale), f, indent=1)
    os.replace(info_file + '.tmp', info_file)
    from tqdm import tqdm
    todo = [i for i in range(num_images)
            if not osp.exists(osp.join(out_dir, f'class_{i:05d}.png'))]
    todo = todo[:missing]
    with tqdm(total=len(todo), desc='class images', unit='img') as bar:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            gens = [torch.Generator('cpu').manual_seed(seed + i)
                    for i in chunk]
            images = pipe([prompt] * len(chunk),
                          num_inference_steps=num_inference_steps,
                          guidance_scale=guidance_scale, height=height,
                          width=width, generator=gens).images
            for i, image in zip(chunk, images):
                target = osp.join(out_dir, f'class_{i:05d}.png')
                image.save(target + '.tmp.png')
                os.replace(target + '.tmp.png', target)
            bar.update(len(chunk))
    return list_images(out_dir)[:num_images]


def _generation_pipeline(model: str, unet: Optional[str]):
    from diffusers import DiffusionPipeline, UNet2DConditionModel
    kwargs = {}
    if unet:
        kwargs['unet'] = UNet2DConditionModel.from_pretrained(
            resolve_model_path(unet))
    pipe = DiffusionPipeline.from_pretrained(
        resolve_model_path(model), **kwargs)
    if torch.cuda.is_available():
        pipe = pipe.to('cuda')
    pipe.set_progress_bar_config(disable=True)
    return pipe


def default_class_dir(prompt: str, generation: Dict) -> str:
    """A cache folder keyed by everything that decides the images."""
    key = json.dumps(dict(prompt=prompt, **generation), sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return osp.join(diffkd_home(), 'class_images', digest)


@DATASETS.register_module()
class DreamBoothDataset(Dataset):
    """Instance images of one subject, plus class images for the prior.

    Args:
        instance_data: folder of images, local imagefolder or hub dataset.
        instance_prompt: the prompt of every instance image
            (``'a photo of sks dog'``).
        pipeline: transforms, as for :class:`HFImageTextDataset`.
        class_prompt: turns prior preservation on (``'a photo of dog'``).
        class_data_dir: folder of class images; generated images go there
            too. Default: a cache folder under ``$DIFFKD_HOME``.
        num_class_images: how many class images to use (and generate).
        class_image_generation: ``dict(model=..., unet=None,
            num_inference_steps=25, guidance_scale=7.5, height=None,
            width=None, batch_size=4, seed=0)`` for the missing ones.
        repeats: length multiplier, so an epoch is more than a few steps.
        max_image_pixels / max_aspect_ratio / skip_oversized: image limits,
            as for :class:`HFImageTextDataset` (a skipped instance or class
            image is replaced by the next one).
    """

    def __init__(self,
                 instance_data: str,
                 instance_prompt: str,
                 pipeline: Sequence = (),
                 class_prompt: Optional[str] = None,
                 class_data_dir: Optional[str] = None,
                 num_class_images: int = 100,
                 class_image_generation: Optional[Dict] = None,
                 image_column: str = 'image',
                 repeats: int = 1,
                 max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS,
                 max_aspect_ratio: Optional[float] = DEFAULT_MAX_ASPECT_RATIO,
                 skip_oversized: bool = False):
        if not instance_prompt or not instance_prompt.strip():
            raise DataError('DreamBoothDataset: instance_prompt is empty')
        self.name = instance_data
        self.instance_images = _instance_images(instance_data, image_column)
        self.instance_prompt = instance_prompt
        self.class_prompt = class_prompt
        self.class_images: List[str] = []
        if class_prompt:
            self.class_images = self._class_images(
                class_prompt, class_data_dir, num_class_images,
                dict(class_image_generation or {}))
        self.pipeline = Compose(list(pipeline))
        self.repeats = repeats
        self.reader = ImageReader(max_image_pixels, max_aspect_ratio,
                                  skip_oversized=skip_oversized)

    @property
    def num_skipped(self) -> int:
        """Images skipped so far (in this process)."""
        return self.reader.num_skipped

    @staticmethod
    def _class_images(prompt: str, folder: Optional[str], num: int,
                      generation: Dict) -> List[str]:
        from mmengine.dist import barrier, get_rank
        folder = folder or default_class_dir(prompt, generation)
        have = len(list_images(folder)) if osp.isdir(folder) else 0
        if have < num:
            if 'model' not in generation:
                raise DataError(
                    f'{folder} has {have} class images of {prompt!r}, '
                    f'{num} are needed: add images there or set '
                    f'class_image_generation=dict(model=...) to generate '
                    f'the missing ones')
            if get_rank() == 0:
                generate_class_images(folder, prompt, num, **generation)
            barrier()
        images = list_images(folder)[:num]
        if not images:
            raise DataError(f'{folder}: no class images')
        return images

    @property
    def with_prior(self) -> bool:
        return bool(self.class_images)

    def __len__(self) -> int:
        return max(len(self.instance_images),
                   len(self.class_images)) * self.repeats

    def _sample(self, image, prompt: str, where: str, idx: int) -> Dict:
        img = self.reader.read(image, where)
        return self.pipeline(
            dict(img=img, text=prompt, ori_shape=img.shape[:2],
                 sample_idx=idx))

    def __getitem__(self, idx: int) -> Dict:
        n = len(self.instance_images)
        item = self.reader.first_usable(
            idx % n, n,
            lambda i: self._sample(self.instance_images[i],
                                   self.instance_prompt,
                                   f'instance data {self.name!r} image {i}',
                                   idx), f'instance data {self.name!r}')
        if not self.with_prior:
            return item
        n = len(self.class_images)
        prior = self.reader.first_usable(
            idx % n, n,
            lambda j: self._sample(self.class_images[j], self.class_prompt,
                                   f'class image {self.class_images[j]}',
                                   idx), 'class images')
        return dict(instance=item, prior=prior)


def _concat(a, b):
    if isinstance(a, torch.Tensor):
        return torch.cat([a, b])
    if isinstance(a, dict):
        return {k: _concat(a[k], b[k]) for k in a}
    if isinstance(a, (list, tuple)):
        return list(a) + list(b)
    raise TypeError(f'cannot concatenate batch values of type '
                    f'{type(a).__name__}')


@FUNCTIONS.register_module()
def dreambooth_collate(batch: Sequence[Dict]) -> Dict:
    """Instance rows, then class rows, along the batch axis, with
    ``inputs['is_prior']`` marking the class rows."""
    if 'prior' not in batch[0]:
        return default_collate(batch)
    inst = default_collate([item['instance'] for item in batch])
    prior = default_collate([item['prior'] for item in batch])
    out = _concat(inst, prior)
    n = len(batch)
    out['inputs']['is_prior'] = torch.arange(2 * n) >= n
    return out
