"""Hostile images, metadata and exports: odd pixel formats, decompression
bombs, rotated photos, non-UTF-8 metadata, unsafe prompts as file names,
damaged export weights and what a killed export leaves behind
(docs/reliability.md, "Hostile images, metadata and exports")."""
import json
import logging
import os
import os.path as osp
import re
import signal
import struct
import subprocess
import sys
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from PIL import Image, ImageFile

from diffkd.apis import load_pipeline, sample_filename
from diffkd.datasets import DataError, OversizedImageError, read_image
from diffkd.engine.hooks import export_model
from diffkd.models.diffusion.loading import CorruptWeightsError
from diffkd.registry import DATASETS, HOOKS, MODELS
from tests.conftest import run_tool
from tests.test_reliability.conftest import subprocess_env

PIPELINE = [
    dict(type='ResizeShortEdge', size=16),
    dict(type='CenterCropWithCoords', size=16),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text']),
]
PROMPT = 'a red circle on a blue background'


def build_dataset(**cfg):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return DATASETS.build(cfg)


def imagefolder(root, images, meta='jsonl'):
    """An imagefolder of ``{file name: PIL image or bytes}``, one caption
    per image, in file-name order."""
    os.makedirs(root, exist_ok=True)
    for name, image in images.items():
        if isinstance(image, bytes):
            (root / name).write_bytes(image)
        else:
            image.save(root / name)
    rows = [dict(file_name=name, text=f'{PROMPT} {name}')
            for name in sorted(images)]
    if meta == 'jsonl':
        with open(root / 'metadata.jsonl', 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in rows)
    return str(root)


def row_of(dataset, name):
    return [i for i in range(len(dataset))
            if dataset.data[i]['image']['path'].endswith(name)][0]


def pixels(dataset, row):
    """A row's pixels after the pipeline, back on the 0..255 scale."""
    img = dataset[row]['inputs']['img']
    return ((img + 1) * 127.5).round().permute(1, 2, 0).numpy()


@pytest.fixture
def log_lines():
    """Messages that reach mmengine's current logger during the test."""
    lines = []

    class Collect(logging.Handler):

        def emit(self, record):
            lines.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Collect(level=logging.INFO)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


@pytest.fixture
def decoded(monkeypatch):
    """The sizes of the images whose pixels get decoded."""
    sizes = set()
    real = ImageFile.ImageFile.load

    def load(im):
        sizes.add(im.size)
        return real(im)

    monkeypatch.setattr(ImageFile.ImageFile, 'load', load)
    return sizes


# ------------------------------------------ 1. 16-bit and alpha images
@pytest.mark.scenario
def test_16bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 24 * 24).round().astype(np.uint16)
    ramp = ramp.reshape(24, 24)
    Image.fromarray(ramp).save(tmp_path / 'gray16.png')
    with Image.open(tmp_path / 'gray16.png') as im:
        assert im.mode == 'I;16'  # what PIL makes of a 16-bit PNG
    want = np.round(ramp / 257.0).astype(np.uint8)

    img = read_image(str(tmp_path / 'gray16.png'), 'gray16')
    assert img.dtype == np.uint8 and img.shape == (24, 24, 3)
    for c in range(3):
        np.testing.assert_array_equal(img[..., c], want)
    # Before: 99.5% of the pixels were 255.
    assert (img == 255).mean() < 0.01

    # The same through a dataset (decoded by datasets: mode I) and through
    # an imagefolder of 16-bit files.
    assert np.array_equal(
        read_image(Image.fromarray(ramp.astype(np.int32), 'I'), 'I'), img)
    ds = build_dataset(type='HFImageTextDataset', dataset=imagefolder(
        tmp_path / 'folder', {'gray16.png': Image.fromarray(ramp)}),
        pipeline=[dict(type='NormalizeRGB'),
                  dict(type='PackInputs', keys=['img', 'text'])])
    np.testing.assert_array_equal(pixels(ds, 0)[..., 0], want)


@pytest.mark.scenario
def test_float_image_in_unit_range_is_scaled_and_others_refused():
    ramp = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    img = read_image(Image.fromarray(ramp, 'F'), 'float image')
    np.testing.assert_array_equal(img[..., 1],
                                  np.round(ramp * 255).astype(np.uint8))
    with pytest.raises(DataError,
                       match=r'^row 3: image <decoded> has floating-point '
                       r'pixels from -2 to 5; only 0..1 is understood'):
        read_image(Image.fromarray(ramp * 7 - 2, 'F'), 'row 3')


@pytest.mark.scenario
def test_alpha_and_palette_images_come_out_as_they_look(tmp_path):
    red, white = [255, 0, 0], [255, 255, 255]
    rgba = np.zeros((8, 8, 4), np.uint8)  # transparent black ...
    rgba[:, :4] = [255, 0, 0, 255]  # ... and an opaque red left half
    rgba[0, 0] = [255, 0, 0, 128]  # one half-transparent red pixel
    la = np.zeros((8, 8, 2), np.uint8)
    la[:, :4] = [40, 255]
    pal = Image.fromarray(np.tile([[0, 1]], (8, 4)).astype(np.uint8), 'P')
    pal.putpalette([255, 0, 0, 0, 0, 255])  # 0: red, 1: blue
    keyed = pal.copy()
    keyed.info['transparency'] = 1  # blue is the transparent index
    images = {'rgba.png': Image.fromarray(rgba, 'RGBA'),
              'la.png': Image.fromarray(la, 'LA'),
              'p.png': pal, 'p_transparent.png': keyed}
    root = imagefolder(tmp_path / 'modes', images)
    got = {name: read_image(osp.join(root, name), name) for name in images}
    for name, img in got.items():
        assert img.dtype == np.uint8 and img.shape == (8, 8, 3), name
    # Transparent pixels show the white a viewer shows, not the colour
    # stored under them.
    assert (got['rgba.png'][1:, :4] == red).all()
    assert (got['rgba.png'][:, 4:] == white).all()
    np.testing.assert_allclose(got['rgba.png'][0, 0], [255, 127, 127],
                               atol=1)
    assert (got['la.png'][:, :4] == 40).all()
    assert (got['la.png'][:, 4:] == 255).all()
    assert (got['p.png'][:, 0::2] == red).all()
    assert (got['p.png'][:, 1::2] == [0, 0, 255]).all()
    assert (got['p_transparent.png'][:, 0::2] == red).all()
    assert (got['p_transparent.png'][:, 1::2] == white).all()


# ------------------------------------ 2. decompression bombs and shapes
def flat_png(width: int, height: int) -> bytes:
    """A one-colour 8-bit grayscale PNG, compressed row by row: the file is
    a few KB and never exists decoded in this process."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack('>I', len(data)) + body + struct.pack(
            '>I', zlib.crc32(body) & 0xffffffff)

    z = zlib.compressobj(9)
    row = b'\0' * (width + 1)  # filter byte + pixels
    idat = b''.join(z.compress(row) for _ in range(height)) + z.flush()
    return (b'\x89PNG\r\n\x1a\n' +
            chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 0, 0,
                                       0, 0)) +
            chunk(b'IDAT', idat) + chunk(b'IEND', b''))


@pytest.fixture(scope='module')
def bombs(tmp_path_factory):
    root = tmp_path_factory.mktemp('bombs')
    images = {'bomb.png': flat_png(12000, 12000),
              'sliver.png': flat_png(1, 700000),
              'wide.png': Image.new('RGB', (64, 8), (0, 200, 0)),
              'good.png': Image.new('RGB', (24, 24), (200, 0, 0))}
    return imagefolder(root, images)


@pytest.mark.scenario
def test_bomb_and_sliver_are_refused_from_the_header(bombs, decoded):
    assert osp.getsize(osp.join(bombs, 'bomb.png')) < 200_000
    ds = build_dataset(type='HFImageTextDataset', dataset=bombs,
                       pipeline=PIPELINE)
    bomb, sliver = row_of(ds, 'bomb.png'), row_of(ds, 'sliver.png')
    with pytest.raises(OversizedImageError) as info:
        ds[bomb]
    assert str(info.value) == (
        f"dataset {bombs!r} row {bomb}: image "
        f"{osp.join(bombs, 'bomb.png')} is 12000x12000 (144 megapixels), "
        'more than max_image_pixels=67108864 (67.1 megapixels); raise '
        'max_image_pixels in the dataset config to train on it, or set '
        'skip_oversized=True to skip such images')
    with pytest.raises(OversizedImageError) as info:
        ds[sliver]
    assert str(info.value) == (
        f"dataset {bombs!r} row {sliver}: image "
        f"{osp.join(bombs, 'sliver.png')} is 1x700000, an aspect ratio of "
        '700000:1, more than max_aspect_ratio=10.0; raise max_aspect_ratio '
        'in the dataset config to train on it, or set skip_oversized=True '
        'to skip such images')
    assert isinstance(info.value, DataError)
    # Neither was decoded: the header told.
    assert decoded == set()
    assert ds[row_of(ds, 'wide.png')]['inputs']['img'].shape == (3, 16, 16)
    assert decoded == {(64, 8)}


@pytest.mark.scenario
def test_oversized_rows_are_skipped_counted_and_logged(bombs, log_lines,
                                                       decoded):
    ds = build_dataset(type='HFImageTextDataset', dataset=bombs,
                       pipeline=PIPELINE, skip_oversized=True)
    texts = [ds[i]['inputs']['text'] for i in range(len(ds))]
    # Rows in file-name order: bomb, good, sliver, wide; each oversized row
    # is replaced by the next usable one.
    assert texts == [f'{PROMPT} {n}' for n in
                     ('good.png', 'good.png', 'wide.png', 'wide.png')]
    assert ds.num_skipped == 2
    skipped = [m for m in log_lines if m.startswith('skipped')]
    assert len(skipped) == 2
    assert skipped[0].startswith(
        f'skipped oversized image (1 so far): dataset {bombs!r} row 0: '
        'image ')
    assert 'is 12000x12000' in skipped[0]
    assert 'an aspect ratio of 700000:1' in skipped[1]
    assert (12000, 12000) not in decoded and (1, 700000) not in decoded


@pytest.mark.scenario
def test_image_limits_are_set_in_the_dataset_config(bombs, tmp_path):
    # The 64x8 image (8:1) passes the default and a 4:1 limit refuses it;
    # None turns a limit off.
    ds = build_dataset(type='HFImageTextDataset', dataset=bombs,
                       pipeline=PIPELINE, max_aspect_ratio=4,
                       max_image_pixels=550)
    wide, good = row_of(ds, 'wide.png'), row_of(ds, 'good.png')
    with pytest.raises(OversizedImageError,
                       match=r'wide\.png is 64x8, an aspect ratio of 8:1, '
                       r'more than max_aspect_ratio=4'):
        ds[wide]
    with pytest.raises(OversizedImageError,
                       match=r'good\.png is 24x24 \(0\.000576 megapixels\), '
                       r'more than max_image_pixels=550 \(0\.00055 '):
        ds[good]
    free = build_dataset(type='HFImageTextDataset', dataset=bombs,
                         pipeline=PIPELINE, max_aspect_ratio=None,
                         max_image_pixels=None)
    assert free[wide]['inputs']['img'].shape == (3, 16, 16)
    # DreamBooth reads through the same loader, with the same options.
    inst = tmp_path / 'inst'
    inst.mkdir()
    (inst / 'a.png').write_bytes(flat_png(12000, 12000))
    Image.new('RGB', (20, 20), (9, 9, 9)).save(inst / 'b.png')
    db = build_dataset(type='DreamBoothDataset', instance_data=str(inst),
                       instance_prompt='a sks dog', pipeline=PIPELINE)
    with pytest.raises(OversizedImageError,
                       match=rf"^instance data {re.escape(repr(str(inst)))} "
                       r'image 0: image .*a\.png is 12000x12000'):
        db[0]
    db = build_dataset(type='DreamBoothDataset', instance_data=str(inst),
                       instance_prompt='a sks dog', pipeline=PIPELINE,
                       skip_oversized=True)
    assert db[0]['inputs']['img'].shape == (3, 16, 16)
    assert db.num_skipped == 1


@pytest.mark.scenario
def test_latent_cache_of_the_old_image_reader_is_stale(tmp_path, toy_sdxl):
    # The same files now decode to other pixels (orientation, 16-bit,
    # alpha): latents cached from the old pixels are not reused.
    from diffkd.datasets import CachedLatentDataset, StaleCacheError
    from diffkd.datasets.latent_cache import cache_fingerprint
    encoder = dict(type='StableDiffusionXL', model=toy_sdxl)
    source = dict(type='HFImageTextDataset', dataset='diffkd-toy/shapes',
                  pipeline=PIPELINE)
    old = cache_fingerprint(encoder, source, 1, 'float32')
    del old['image_reader']  # what a cache filled before recorded
    cache = tmp_path / 'cache'
    cache.mkdir()
    (cache / 'manifest.json').write_text(json.dumps(dict(
        fingerprint=old, shard_size=1, num_images=0, records=[])))
    with pytest.raises(StaleCacheError,
                       match=r'is stale: image_reader changed since it was '
                       r'filled; fill it with `python tools/cache_latents'):
        CachedLatentDataset(str(cache), encoder, source)


# ---------------------------------------------- 3. EXIF orientation
@pytest.mark.scenario
@pytest.mark.parametrize('orientation,top', [(6, 'red'), (8, 'blue')])
def test_exif_orientation_is_applied(tmp_path, orientation, top):
    # Stored 32 wide and 16 high: red left half, blue right half. 6 means
    # "turn 90 degrees clockwise to view", 8 counter-clockwise.
    stored = np.zeros((16, 32, 3), np.uint8)
    stored[:, :16] = [255, 0, 0]
    stored[:, 16:] = [0, 0, 255]
    exif = Image.Exif()
    exif[0x0112] = orientation
    root = tmp_path / f'exif{orientation}'
    root.mkdir()
    Image.fromarray(stored).save(root / 'photo.jpg', exif=exif, quality=95)
    with open(root / 'metadata.jsonl', 'w') as f:
        f.write(json.dumps(dict(file_name='photo.jpg', text=PROMPT)) + '\n')

    img = read_image(str(root / 'photo.jpg'), 'photo')
    assert img.shape == (32, 16, 3)  # upright: 16 wide, 32 high
    colours = {'red': [255, 0, 0], 'blue': [0, 0, 255]}
    bottom = 'blue' if top == 'red' else 'red'
    np.testing.assert_allclose(img[:12].mean((0, 1)), colours[top], atol=8)
    np.testing.assert_allclose(img[-12:].mean((0, 1)), colours[bottom],
                               atol=8)
    # What a training sample records is the upright size.
    ds = build_dataset(type='HFImageTextDataset', dataset=str(root),
                       pipeline=[
                           dict(type='NormalizeRGB'),
                           dict(type='PackInputs', keys=['img', 'text'],
                                meta_keys=['ori_shape'])
                       ])
    item = ds[0]
    assert tuple(item['data_samples']['ori_shape']) == (32, 16)
    assert item['inputs']['img'].shape == (3, 32, 16)


# ------------------------------------------- 4. metadata not in UTF-8
@pytest.mark.scenario
@pytest.mark.parametrize('meta', ['metadata.jsonl', 'metadata.csv'])
def test_metadata_not_utf8_names_file_and_line(tmp_path, meta):
    root = tmp_path / 'latin1'
    root.mkdir()
    for name in ('a.png', 'b.png'):
        Image.new('RGB', (8, 8)).save(root / name)
    if meta == 'metadata.jsonl':
        lines = ['{"file_name": "a.png", "text": "a cup"}',
                 '{"file_name": "b.png", "text": "un caf\u00e9 cr\u00e8me"}']
    else:
        lines = ['file_name,text', 'a.png,a cup', 'b.png,un caf\u00e9']
    (root / meta).write_bytes(('\n'.join(lines) + '\n').encode('latin-1'))
    where = 2 if meta == 'metadata.jsonl' else 3
    col = lines[where - 1].index('\u00e9') + 1
    with pytest.raises(DataError) as info:
        build_dataset(type='HFImageTextDataset', dataset=str(root),
                      pipeline=PIPELINE)
    assert str(info.value) == (
        f'dataset {str(root)!r}: {root / meta} line {where} is not valid '
        f'UTF-8 (byte 0xe9 at column {col}); save the file as UTF-8')


# ----------------------------------------- 5. prompts as file names
@pytest.mark.scenario
@pytest.mark.parametrize('prompt,name', [
    (PROMPT, '000_a_red_circle_on_a_blue_background_seed0.png'),
    ('a cat/dog', '000_a_cat_dog_seed0.png'),
    ('../../etc/passwd', '000_etc_passwd_seed0.png'),
    ('red\x1b[31m\nline\tend\x00', '000_red_[31m_line_end_seed0.png'),
    ('...', '000_seed0.png'),
    ('C:\\new <file>?*|"', '000_C_new_file_seed0.png'),
    ('caf\u00e9 \u732b', '000_caf\u00e9_\u732b_seed0.png'),
])
def test_sample_file_names_are_safe_and_readable(prompt, name):
    assert sample_filename(0, prompt, 0) == name


@pytest.mark.scenario
def test_overlong_prompts_make_short_valid_file_names():
    for prompt in ('word ' * 500, '\U0001f431' * 300, '\u732b' * 300):
        name = sample_filename(12, prompt, 123456)
        assert len(name.encode('utf-8')) <= 200, name
        assert name.startswith('012_') and name.endswith('_seed123456.png')
        assert '\ufffd' not in name  # cut between characters, not bytes
    assert sample_filename(1, 'a ' * 100, 2) == \
        '001_' + '_'.join(['a'] * 30) + '_seed2.png'


# ------------------------------------- exports used by the tests below
def build_model(**cfg):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(cfg)


@pytest.fixture(scope='module')
def sd15_model(toy_sd15):
    return build_model(type='StableDiffusion', model=toy_sd15)


@pytest.mark.scenario
def test_infer_tool_writes_unsafe_prompts_into_its_folder(tmp_path,
                                                          sd15_model):
    work = tmp_path / 'work'
    export_model(sd15_model, str(work / 'final'), step=0)
    out = tmp_path / 'out'
    prompts = ['a cat/dog', 'red\x1b[31m\nline', '..']
    written = run_tool('infer.py', [work, '--prompt', *prompts, '--steps',
                                    1, '--guidance', 1.0, '--out', out])
    names = ['000_a_cat_dog_seed0.png', '001_red_[31m_line_seed1.png',
             '002_seed2.png']
    assert written == [str(out / n) for n in names]
    assert sorted(os.listdir(out)) == names
    for n in names:
        with Image.open(out / n) as im:
            assert im.size == (32, 32)


# ------------------------------------------------ 6. damaged exports
def damage(path, how):
    size = osp.getsize(path)
    with open(path, 'r+b') as f:
        if how == 'empty':
            f.truncate(0)
        elif how == 'truncated':
            f.truncate(size // 2)
        else:  # a header length no file could hold
            f.write(struct.pack('<Q', 1 << 62))
    return size


@pytest.mark.scenario
@pytest.mark.parametrize('how', ['empty', 'truncated', 'absurd-header'])
def test_damaged_export_weights_name_file_and_cause(tmp_path, sd15_model,
                                                    how):
    export = str(tmp_path / 'final')
    export_model(sd15_model, export, step=0)
    weights = osp.join(export, 'unet', 'diffusion_pytorch_model.safetensors')
    size = damage(weights, how)
    why = {
        'empty': 'is empty (0 bytes)',
        'truncated': f'is truncated: {size // 2} bytes, its header '
                     f'describes {size}',
        'absurd-header': 'is truncated or not a safetensors file: its '
                         f'header needs {8 + (1 << 62)} bytes, the file '
                         f'has {size}'
    }[how]
    message = (f"cannot load UNet2DConditionModel from {export} (subfolder "
               f"'unet'): weight file {weights} {why}. Re-download or "
               're-export it.')
    with pytest.raises(CorruptWeightsError) as info:
        load_pipeline(str(tmp_path))  # the work dir, as tools/infer.py
    assert str(info.value) == message
    with pytest.raises(CorruptWeightsError, match=re.escape(message)):
        run_tool('infer.py', [tmp_path, '--prompt', 'x', '--steps', 1,
                              '--out', tmp_path / 'out'])


@pytest.mark.scenario
def test_damaged_lora_export_names_file_and_cause(tmp_path, toy_sd15):
    model = build_model(type='StableDiffusion', model=toy_sd15,
                        lora=dict(rank=4))
    export = str(tmp_path / 'final')
    export_model(model, export, step=0)
    weights = osp.join(export, 'lora', 'pytorch_lora_weights.safetensors')
    damage(weights, 'empty')
    with pytest.raises(CorruptWeightsError) as info:
        load_pipeline(export)
    assert str(info.value) == (
        f'cannot load the LoRA of {export}: weight file {weights} is empty '
        '(0 bytes). Re-download or re-export it.')


# ---------------------------------------- 7. export permissions
def modes(root):
    """{relative path: permission bits} of a folder and all it holds."""
    out = {'.': os.stat(root).st_mode & 0o777}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = osp.join(folder, name)
            out[osp.relpath(path, root)] = os.stat(path).st_mode & 0o777
    return out


@pytest.mark.scenario
@pytest.mark.parametrize('umask', [0o022, 0o027, 0o002], ids=oct)
def test_export_gets_the_permissions_of_the_umask(tmp_path, sd15_model,
                                                  umask):
    old = os.umask(umask)
    try:
        out = export_model(sd15_model, str(tmp_path / 'final'), step=0)
        export_model(sd15_model, out, step=1)  # replacing one, too
    finally:
        os.umask(old)
    got = modes(out)
    assert set(got) == {'.', 'unet', 'unet/config.json',
                        'unet/diffusion_pytorch_model.safetensors',
                        'export_info.json'}
    for rel, mode in got.items():
        want = (0o777 if osp.isdir(osp.join(out, rel)) else 0o666) & ~umask
        assert mode == want, f'{rel}: {oct(mode)}, umask {oct(umask)}'
    assert os.listdir(tmp_path) == ['final']


# ------------------------------------- 8. a killed export's leftovers
KILLED_EXPORT = r'''
import os, signal, sys
from diffkd.engine.hooks import export_model

class Model:
    pipeline_class_name = 'StableDiffusionPipeline'

    def __init__(self, kill):
        self.kill = kill

    def export_pretrained(self, out):
        os.makedirs(os.path.join(out, 'unet'))
        with open(os.path.join(out, 'unet', 'config.json'), 'w') as f:
            f.write('{}')
        if self.kill == 'writing':  # config.json written, weights not
            os.kill(os.getpid(), signal.SIGKILL)
        return {'parts': ['unet'], 'base_model': 'x'}

work, kill = sys.argv[1:]
export_model(Model(None), os.path.join(work, 'final'), step=1)
if kill == 'renaming':  # old export moved aside, new one not yet in place
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)

    os.replace = replace
export_model(Model(kill), os.path.join(work, 'final'), step=2)
'''


@pytest.mark.scenario
@pytest.mark.parametrize('kill', ['writing', 'renaming'])
def test_killed_export_leftovers_are_removed_when_training_starts(
        tmp_path, log_lines, kill):
    work = tmp_path / 'work'
    work.mkdir()
    res = subprocess.run([sys.executable, '-c', KILLED_EXPORT, str(work),
                          kill], env=subprocess_env(), capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == -signal.SIGKILL, res.stderr
    killed = [n for n in os.listdir(work) if n.startswith('.')]
    assert killed, 'the kill left nothing to clean'
    # Where earlier versions moved a replaced export aside.
    os.makedirs(work / '.old-2k9x_q1a' / 'x')
    (work / '.old-2k9x_q1a' / 'x' / 'export_info.json').write_text('{}')
    leftovers = sorted(killed + ['.old-2k9x_q1a'])
    # Things of the same look that the export writer did not make stay.
    os.makedirs(work / '.old-c4ch3abc' / 'x')
    (work / '.old-c4ch3abc' / 'x' / 'manifest.json').write_text('{}')
    (work / '.tmp-iter_2.pth').write_text('a checkpoint hook leftover')
    (work / '.export-notes.txt').write_text('mine')
    (work / 'iter_2').mkdir()
    (work / 'iter_2' / 'export_info.json').write_text('{}')
    before = set(os.listdir(work))

    with DefaultScope.overwrite_default_scope('diffkd'):
        hook = HOOKS.build(dict(type='DiffusersExportHook'))
    runner = SimpleNamespace(work_dir=str(work),
                             logger=MMLogger.get_current_instance())
    hook.before_train(runner)
    assert set(os.listdir(work)) == before - set(leftovers) | {'final'}
    restored = [f'{work / "final"}: put back the previous export, which '
                'an interrupted export had moved aside'] \
        if kill == 'renaming' else []
    assert [m for m in log_lines if 'interrupted export' in m] == \
        restored + [f'removed what an interrupted export left in {work}: '
                    f'{", ".join(leftovers)}']
    # The previous export is what final/ holds, also when the kill came
    # between moving it aside and putting the new one in place.
    with open(work / 'final' / 'export_info.json') as f:
        assert json.load(f)['step'] == 1
