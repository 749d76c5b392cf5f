import random

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from diffkd.registry import TRANSFORMS


def build(cfg):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return TRANSFORMS.build(cfg)


def ramp(h, w):
    """An image whose pixel at (y, x) encodes its own position."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = np.arange(h)[:, None]
    img[..., 1] = np.arange(w)[None, :]
    return img


def test_resize_shorter_side_and_exact():
    out = build(dict(type='ResizeShortEdge', size=32))(dict(img=ramp(64, 128)))
    assert out['img'].shape == (32, 64, 3)
    assert out['ori_shape'] == (64, 128)
    assert out['resized_shape'] == (32, 64)
    resize = build(dict(type='ResizeShortEdge', size=(20, 10)))
    out = resize(dict(img=ramp(64, 128)))
    assert out['img'].shape == (20, 10, 3)


def test_center_crop_records_coordinates():
    crop = build(dict(type='CenterCropWithCoords', size=32))
    out = crop(dict(img=ramp(40, 64)))
    assert out['crop_top_left'] == (4, 16)
    assert out['img'][0, 0, 0] == 4 and out['img'][0, 0, 1] == 16


def test_random_crop_coordinates_match_pixels():
    random.seed(0)
    t = build(dict(type='RandomCropWithCoords', size=(16, 24)))
    seen = set()
    for _ in range(20):
        out = t(dict(img=ramp(40, 64)))
        top, left = out['crop_top_left']
        assert out['img'].shape == (16, 24, 3)
        assert out['img'][0, 0, 0] == top and out['img'][0, 0, 1] == left
        seen.add((top, left))
    assert len(seen) > 1


def test_crop_larger_than_image_is_an_error():
    with pytest.raises(ValueError, match='larger than the image'):
        build(dict(type='CenterCropWithCoords', size=64))(
            dict(img=ramp(32, 32)))


def test_flip_mirrors_image_and_crop_left():
    crop = build(dict(type='CenterCropWithCoords', size=(16, 24)))
    res = crop(dict(img=ramp(40, 64), resized_shape=(40, 64)))
    left_before = res['crop_top_left'][1]
    flipped = build(dict(type='RandomHorizontalFlip', prob=1.0))(dict(res))
    assert flipped['flip'] is True
    np.testing.assert_array_equal(flipped['img'], res['img'][:, ::-1])
    # The crop's left edge measured in the flipped resized image.
    assert flipped['crop_top_left'] == (res['crop_top_left'][0],
                                        64 - left_before - 24)
    kept = build(dict(type='RandomHorizontalFlip', prob=0.0))(dict(res))
    assert kept['flip'] is False and kept['crop_top_left'] == (12, 20)
    with pytest.raises(ValueError):
        build(dict(type='RandomHorizontalFlip', prob=1.5))


def test_time_ids_follow_the_pipeline():
    random.seed(1)
    pipeline = [
        build(dict(type='ResizeShortEdge', size=48)),
        build(dict(type='RandomCropWithCoords', size=32)),
        build(dict(type='ComputeTimeIds')),
    ]
    res = dict(img=ramp(96, 120), ori_shape=(96, 120))
    for t in pipeline:
        res = t(res)
    top, left = res['crop_top_left']
    assert res['time_ids'].tolist() == [96, 120, top, left, 32, 32]


def test_normalize_and_pack():
    res = build(dict(type='NormalizeRGB'))(dict(
        img=np.array([[[0, 255, 127]]], np.uint8), text='a red circle'))
    np.testing.assert_allclose(res['img'][0, 0], [-1, 1, -0.003921], atol=1e-4)
    packed = build(dict(type='PackInputs', keys=['img', 'text']))(res)
    assert packed['inputs']['img'].shape == (3, 1, 1)
    assert packed['inputs']['img'].dtype == torch.float32
    assert packed['inputs']['text'] == 'a red circle'


def test_pack_names_missing_key_and_unnormalized_image():
    pack = build(dict(type='PackInputs', keys=['img', 'time_ids']))
    with pytest.raises(KeyError, match='time_ids'):
        pack(dict(img=np.zeros((2, 2, 3), np.float32)))
    with pytest.raises(TypeError, match='Normalize'):
        build(dict(type='PackInputs', keys=['img']))(
            dict(img=np.zeros((2, 2, 3), np.uint8)))


@pytest.mark.parametrize('cfg,new', [
    (dict(type='Resize', size=32), 'ResizeShortEdge'),
    (dict(type='CenterCrop', size=32), 'CenterCropWithCoords'),
    (dict(type='RandomCrop', size=32), 'RandomCropWithCoords'),
    (dict(type='Normalize'), 'NormalizeRGB'),
    # mmcv's Normalize would take these and swap the RGB channels
    (dict(type='Normalize', mean=[127.5] * 3, std=[127.5] * 3),
     'NormalizeRGB')])
def test_former_names_in_diffkd_configs_name_the_new_class(cfg, new):
    import os.path as osp

    from mmengine.config import Config

    from diffkd.apis import check_config
    from diffkd.registry import RenamedTypeError
    from tests.conftest import REPO
    with pytest.raises(RenamedTypeError, match=f"is now '{new}'"):
        build(cfg)
    # a training run's pre-flight (tools/train.py) names it before the
    # dataset's pipeline is built by mmengine
    run_cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'toy', 'sd15_finetune_toy.py'))
    run_cfg.train_dataloader.dataset.pipeline = [cfg]
    with pytest.raises(RenamedTypeError, match=new):
        check_config(run_cfg)


def test_mmcv_transforms_keep_their_names():
    from mmcv.transforms import CenterCrop, Normalize, Resize
    resize = build(dict(type='Resize', scale=(10, 20)))
    assert type(resize) is Resize
    assert resize(dict(img=ramp(64, 128)))['img'].shape == (20, 10, 3)
    assert type(build(dict(type='CenterCrop', crop_size=8))) is CenterCrop
    mean, std = [127.5] * 3, [127.5] * 3
    norm = build(dict(type='Normalize', mean=mean, std=std, to_rgb=False))
    assert type(norm) is Normalize
    img = ramp(4, 6)
    np.testing.assert_array_equal(
        norm(dict(img=img))['img'],
        build(dict(type='NormalizeRGB'))(dict(img=img))['img'])
