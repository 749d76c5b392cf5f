"""Hostile input: every mistake in a config, a data set, a weight folder or a
checkpoint stops with an error that says what is wrong and where
(docs/reliability.md, "Hostile input")."""
import json
import logging
import os
import os.path as osp
import pickle
import re
import shlex
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.registry import DefaultScope
from mmengine.runner import CheckpointLoader, Runner
from PIL import Image

from diffkd.apis import check_config
from diffkd.datasets import DataError
from diffkd.engine import DiffusionRunner, read_checkpoint
from diffkd.engine.checkpoint import UnsafeCheckpointError, safe_torch_load
from diffkd.models.compression import IncompatibleTeacherError
from diffkd.models.diffusion.loading import CorruptWeightsError
from diffkd.models.distill import DistillConfigError
from diffkd.registry import MODELS, ConfigKeyError, UnknownTypeError
from tests.conftest import REPO

PIPELINE = [
    dict(type='ResizeShortEdge', size=16),
    dict(type='CenterCropWithCoords', size=16),
    dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text']),
]
PROMPT = 'a red circle on a blue background'


def build_model(**cfg):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(cfg)


def distiller(path, **kw):
    kw.setdefault('teacher', dict(model=path))
    return build_model(
        type='DiffusionDistiller',
        student=dict(type='StableDiffusion', model=path), **kw)


def runner_config(work_dir, model, **parts) -> Config:
    return Config(dict(model=model, work_dir=str(work_dir),
                       default_scope='diffkd', log_level='WARNING', **parts))


@pytest.fixture(scope='module')
def runner(tmp_path_factory, toy_sd15):
    """The runner of a training run (configs/_base_/default_runtime.py)
    around the toy SD-1.5 model: its own build methods (hooks, loops,
    optimizers, checkpoints) are what a training run uses."""
    work = tmp_path_factory.mktemp('hostile_runner')
    return DiffusionRunner.from_cfg(
        runner_config(work, dict(type='StableDiffusion', model=toy_sd15)))


@pytest.fixture
def log_lines():
    """Messages that reach mmengine's current logger during the test."""
    lines = []

    class Collect(logging.Handler):

        def emit(self, record):
            lines.append(record.getMessage())

    logger = MMLogger.get_current_instance()
    handler = Collect(level=logging.WARNING)
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def unet_copy(tmp_path, toy_sd15):
    """A diffusers folder holding a copy of the toy UNet, to damage."""
    root = tmp_path / 'copy'
    shutil.copytree(osp.join(toy_sd15, 'unet'), root / 'unet')
    return str(root)


# ---------------------------------------------- 1. unknown ``type`` names
# What the Runner builds is checked before it is built (check_config, run by
# tools/train.py and tools/test.py); what diffkd's models build themselves
# is explained by diffkd's registries.
@pytest.mark.scenario
@pytest.mark.parametrize('typo,meant', [('StableDifusionXL',
                                         'StableDiffusionXL'),
                                        ('DiffusionDistiler',
                                         'DiffusionDistiller')])
def test_unknown_model_type_suggests_registered_names(tmp_path, toy_sd15,
                                                      typo, meant):
    cfg = runner_config(tmp_path, dict(type=typo, model=toy_sd15))
    with pytest.raises(UnknownTypeError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg.startswith(f"model type '{typo}' is not registered (scope "
                          "'diffkd'); did you mean "), msg
    assert f"did you mean '{meant}'" in msg, msg
    # Still a KeyError, the type mmengine and its callers expect.
    assert isinstance(info.value, KeyError)


UNKNOWN_PARTS = {
    'hook': (dict(custom_hooks=[dict(type='EMAHok')]),
             "hook type 'EMAHok'", 'EMAHook'),
    'loop': (dict(train_cfg=dict(type='IterBasedTrainLop', max_iters=1)),
             "loop type 'IterBasedTrainLop'", 'IterBasedTrainLoop'),
    # mmengine's own constructor, and the one diffkd's schedules name.
    'optimizer': (dict(optim_wrapper=dict(
        optimizer=dict(type='AdamWW', lr=1e-4))),
                  "optimizer type 'AdamWW'", 'AdamW'),
    'optimizer-trainable': (dict(optim_wrapper=dict(
        optimizer=dict(type='AdamWW', lr=1e-4),
        constructor='TrainableParamsOptimWrapperConstructor')),
                            "optimizer type 'AdamWW'", 'AdamW'),
    'transform': (dict(train_dataloader=dict(
        batch_size=1, sampler=dict(type='DefaultSampler'),
        dataset=dict(type='HFImageTextDataset', dataset='unused',
                     pipeline=[dict(type='Resise', size=8)]))),
                  "transform type 'Resise'", 'Resize'),
}


@pytest.mark.scenario
@pytest.mark.parametrize('part', sorted(UNKNOWN_PARTS))
def test_unknown_type_in_runner_built_parts(tmp_path, toy_sd15, part):
    parts, head, meant = UNKNOWN_PARTS[part]
    cfg = runner_config(tmp_path, dict(type='StableDiffusion',
                                       model=toy_sd15), **parts)
    with pytest.raises(UnknownTypeError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert msg.startswith(head + " is not registered (scope 'diffkd')"), msg
    assert f"did you mean '{meant}'" in msg, msg


@pytest.mark.scenario
def test_unknown_type_without_close_name_lists_the_registry(tmp_path,
                                                           toy_sd15):
    cfg = runner_config(tmp_path, dict(type='StableDiffusion',
                                       model=toy_sd15),
                        custom_hooks=[dict(type='Zzyzx')])
    with pytest.raises(UnknownTypeError) as info:
        check_config(cfg)
    msg = str(info.value)
    assert "hook type 'Zzyzx' is not registered" in msg
    assert 'Registered hook types: ' in msg and 'EMAHook' in msg
    assert 'custom_imports' in msg


@pytest.mark.scenario
def test_unknown_nested_types_are_explained_once(toy_sd15):
    # Built inside StableDiffusion / DiffusionDistiller by their own
    # MODELS.build / COMPRESSIONS.build calls.
    with pytest.raises(UnknownTypeError,
                       match=r"^model type 'L2Los' is not registered .*"
                       r"did you mean 'L2Loss'"):
        build_model(type='StableDiffusion', model=toy_sd15,
                    loss=dict(type='L2Los'))
    with pytest.raises(UnknownTypeError,
                       match=r"^compression type 'BKSDMSmal' is not "
                       r"registered .*did you mean 'BKSDMSmall'"):
        distiller(toy_sd15, compression=dict(type='BKSDMSmal'))


# ------------------------------------------------ 2. misspelled config keys
@pytest.mark.scenario
def test_misspelled_model_key_names_class_key_and_parameters(tmp_path,
                                                             toy_sd15):
    model = dict(type='DiffusionDistiller',
                 studnet=dict(type='StableDiffusion', model=toy_sd15),
                 teacher=dict(model=toy_sd15))
    with pytest.raises(ConfigKeyError) as info:
        check_config(runner_config(tmp_path, model))
    msg = str(info.value)
    assert msg.startswith("DiffusionDistiller got unknown config key "
                          "'studnet' (did you mean 'student'"), msg
    assert 'DiffusionDistiller takes: student, teacher, compression' in msg
    assert isinstance(info.value, TypeError)


@pytest.mark.scenario
def test_misspelled_keys_in_nested_and_hook_configs(tmp_path, toy_sd15):
    with pytest.raises(ConfigKeyError,
                       match=r"^DiffusionDistiller got unknown config key "
                       r"'loss_weigths' \(did you mean 'loss_weights'\?\)"):
        distiller(toy_sd15, loss_weigths=dict(task=1.0))
    with pytest.raises(ConfigKeyError,
                       match=r"^L2Loss got unknown config key 'loss_wieght' "
                       r"\(did you mean 'loss_weight'\?\); L2Loss takes: "
                       r"loss_weight$"):
        build_model(type='StableDiffusion', model=toy_sd15,
                    loss=dict(type='L2Loss', loss_wieght=2.0))
    model = dict(type='StableDiffusion', model=toy_sd15)
    with pytest.raises(ConfigKeyError,
                       match=r"^LoggerHook got unknown config key 'intervel' "
                       r"\(did you mean 'interval'"):
        check_config(runner_config(
            tmp_path, model,
            custom_hooks=[dict(type='LoggerHook', intervel=5)]))
    # LinearLR hands **kwargs to its base class, which rejects the key.
    with pytest.raises(ConfigKeyError,
                       match=r"^LinearLR got unknown config key "
                       r"'strat_factor' \(did you mean 'start_factor'"):
        check_config(runner_config(
            tmp_path, model, param_scheduler=[
                dict(type='LinearLR', strat_factor=0.1, by_epoch=False)]))


# ------------------------------------- 3. incompatible teacher and student
@pytest.mark.scenario
def test_mismatched_feature_pair_names_both_modules_and_shapes(toy_sd15):
    with pytest.raises(DistillConfigError) as info:
        distiller(toy_sd15, compression=None, features=None,
                  pairs=[('down_blocks.0', 'down_blocks.1')])
    assert re.fullmatch(
        r"feature pair student 'down_blocks.0' \(1, 16, \d+, \d+\) / "
        r"teacher 'down_blocks.1' \(1, 32, \d+, \d+\): shapes do not match",
        str(info.value)), str(info.value)


@pytest.mark.scenario
def test_missing_pair_module_and_wrong_recipe_name_the_teacher(toy_sd15):
    with pytest.raises(DistillConfigError,
                       match=r"feature pair \('down_blocks.0', "
                       r"'down_blocks.7'\): the teacher has no module "
                       r"'down_blocks.7'"):
        distiller(toy_sd15, compression=None, features=None,
                  pairs=[('down_blocks.0', 'down_blocks.7')])
    # An SDXL recipe on an SD-1.5 teacher: the recipe and the teacher's
    # blocks are named.
    with pytest.raises(IncompatibleTeacherError,
                       match=r"SSD1B is written for a 3-stage teacher UNet, "
                       r"but the teacher has 4 stages \(\['CrossAttnDown"):
        distiller(toy_sd15, compression=dict(type='SSD1B'))


# ------------------------------------------------ 4. corrupt images in data
@pytest.fixture(scope='module')
def damaged_loader(tmp_path_factory):
    """An imagefolder with a good, a truncated and a garbage .png, loaded
    the way a Runner loads its train dataloader."""
    root = tmp_path_factory.mktemp('damaged_images')
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), np.uint8)).save(
        root / 'good.png')
    data = (root / 'good.png').read_bytes()
    (root / 'truncated.png').write_bytes(data[:len(data) // 2])
    (root / 'garbage.png').write_bytes(b'\x89PNG this is no image')
    with open(root / 'metadata.jsonl', 'w') as f:
        for name in ('good.png', 'truncated.png', 'garbage.png'):
            f.write(json.dumps(dict(file_name=name, text=PROMPT)) + '\n')
    with DefaultScope.overwrite_default_scope('diffkd'):
        return Runner.build_dataloader(dict(
            batch_size=1, num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='HFImageTextDataset', dataset=str(root),
                         pipeline=PIPELINE)))


def row_of(dataset, name):
    return [i for i in range(len(dataset))
            if dataset.data[i]['image']['path'].endswith(name)][0]


@pytest.mark.scenario
@pytest.mark.parametrize('name,why', [('truncated.png',
                                       'image file is truncated'),
                                      ('garbage.png',
                                       'cannot identify image file')])
def test_corrupt_image_names_file_and_row(damaged_loader, name, why):
    ds = damaged_loader.dataset
    row = row_of(ds, name)
    assert ds[row_of(ds, 'good.png')]['inputs']['img'].shape == (3, 16, 16)
    with pytest.raises(DataError) as info:
        ds[row]
    msg = str(info.value)
    assert msg.startswith(f'dataset {ds.name!r} row {row}: cannot read '
                          f'image {osp.join(ds.name, name)}: '), msg
    assert why in msg, msg


@pytest.mark.scenario
def test_corrupt_image_stops_the_dataloader_with_its_row(damaged_loader):
    ds = damaged_loader.dataset
    first_bad = min(row_of(ds, 'truncated.png'), row_of(ds, 'garbage.png'))
    seen = 0
    with pytest.raises(DataError) as info:
        for _ in damaged_loader:  # the training loop's path
            seen += 1
    assert seen == first_bad  # every row before it loaded
    assert f'row {first_bad}: cannot read image ' in str(info.value)


@pytest.mark.scenario
def test_decompression_bomb_is_bad_data_not_a_crash(damaged_loader,
                                                    monkeypatch):
    # 24x24 pixels count as a bomb once the limit is 100 pixels.
    monkeypatch.setattr(Image, 'MAX_IMAGE_PIXELS', 100)
    ds = damaged_loader.dataset
    row = row_of(ds, 'good.png')
    with pytest.raises(DataError,
                       match=rf"row {row}: cannot read image .*good\.png: "
                       r'Image size \(576 pixels\) exceeds limit'):
        ds[row]


# -------------------------------------------- 5. damaged .safetensors UNet
@pytest.mark.scenario
@pytest.mark.parametrize('damage', ['empty', 'truncated'])
def test_damaged_unet_weights_name_the_file(tmp_path, toy_sd15, damage):
    root = unet_copy(tmp_path, toy_sd15)
    weights = osp.join(root, 'unet', 'diffusion_pytorch_model.safetensors')
    size = osp.getsize(weights)
    with open(weights, 'r+b') as f:
        f.truncate(0 if damage == 'empty' else size // 2)
    with pytest.raises(CorruptWeightsError) as info:
        build_model(type='StableDiffusion', model=toy_sd15,
                    unet=dict(name_or_path=root, subfolder='unet'))
    why = 'is empty (0 bytes)' if damage == 'empty' else \
        f'is truncated: {size // 2} bytes, its header describes {size}'
    assert str(info.value) == (
        f"cannot load UNet2DConditionModel from {root} (subfolder 'unet'): "
        f'weight file {weights} {why}. Re-download or re-export it.')
    assert isinstance(info.value, OSError)


# --------------------------------------- 6. folders without config.json
@pytest.mark.scenario
def test_unet_folder_without_config_names_folder_and_file(tmp_path,
                                                          toy_sd15):
    root = unet_copy(tmp_path, toy_sd15)
    os.remove(osp.join(root, 'unet', 'config.json'))
    with pytest.raises(FileNotFoundError) as info:
        build_model(type='StableDiffusion', model=toy_sd15,
                    unet=dict(name_or_path=root, subfolder='unet'))
    folder = osp.join(root, 'unet')
    assert str(info.value) == (
        f"cannot load UNet2DConditionModel from {root} (subfolder 'unet'): "
        f'{folder} has no config.json ({folder} holds '
        'diffusion_pytorch_model.safetensors); a diffusers/transformers '
        'save folder keeps its config.json next to the weights')


@pytest.mark.scenario
def test_empty_or_missing_model_folder_is_named(tmp_path, toy_sd15):
    empty = str(tmp_path / 'empty')
    os.makedirs(empty)
    with pytest.raises(FileNotFoundError) as info:
        build_model(type='StableDiffusion', model=empty)
    assert str(info.value) == (
        f"cannot load CLIPTokenizer from {empty} (subfolder 'tokenizer'): "
        f'folder {osp.join(empty, "tokenizer")} does not exist ({empty} is '
        'empty)')
    with pytest.raises(FileNotFoundError,
                       match=rf'{re.escape(empty)} has no config.json '
                       rf'\({re.escape(empty)} is empty\)'):
        build_model(type='StableDiffusion', model=toy_sd15, unet=empty)
    # A path that does not exist is not sent to the hub as a model id.
    gone = str(tmp_path / 'no' / 'such' / 'model')
    with pytest.raises(FileNotFoundError,
                       match=rf'^cannot load UNet2DConditionModel from '
                       rf'{re.escape(gone)}: {re.escape(gone)} does not '
                       r'exist$'):
        build_model(type='StableDiffusion', model=toy_sd15, unet=gone)


# ------------------------------------------- 7. checkpoints carrying code
class RunsCode:
    """Unpickling this runs a shell command (touches ``marker``)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f'touch {shlex.quote(self.marker)}', )


@pytest.mark.scenario
@pytest.mark.parametrize('writer', ['torch.save', 'pickle.dump'])
def test_checkpoint_carrying_code_is_refused(runner, tmp_path, writer):
    # The payload really runs code when unpickled without restriction.
    control = tmp_path / 'control'
    pickle.loads(pickle.dumps(RunsCode(control)))
    assert control.exists()

    marker = tmp_path / 'MARKER'
    ckpt = str(tmp_path / 'evil.pth')
    state = dict(state_dict=dict(runner.model.state_dict()),
                 meta=dict(iter=1, note=RunsCode(marker)))
    if writer == 'torch.save':
        torch.save(state, ckpt)
    else:
        with open(ckpt, 'wb') as f:
            pickle.dump(state, f)
    for load in (lambda: safe_torch_load(ckpt),
                 lambda: read_checkpoint(ckpt),
                 lambda: runner.load_checkpoint(ckpt)):
        with pytest.raises(UnsafeCheckpointError,
                           match=rf'^refused to load {re.escape(ckpt)}: it '
                           r'holds objects that are neither tensors nor '
                           r'known training state'):
            load()
        assert not marker.exists()


# --------------------------------------------------- 8. over-long prompts
def long_and_short(model):
    """A 300-token prompt and the prompt it is cut to."""
    words = PROMPT.split() * 50
    limit = model.tokenizer.model_max_length
    long = ' '.join(words[:298])  # + BOS and EOS
    assert len(model.tokenizer(long).input_ids) == 300
    return long, ' '.join(words[:limit - 2])


def training_step(model, texts):
    torch.manual_seed(0)
    inputs = dict(img=torch.rand(len(texts), 3, 32, 32) * 2 - 1,
                  text=list(texts))
    losses = model(**model.data_preprocessor(dict(inputs=inputs), True),
                   mode='loss')
    assert torch.isfinite(losses['loss'])
    losses['loss'].backward()
    assert model.unet.conv_in.weight.grad is not None


@pytest.fixture(scope='module')
def sd15_model(toy_sd15):
    return build_model(type='StableDiffusion', model=toy_sd15)


@pytest.mark.scenario
def test_long_prompt_is_truncated_with_a_warning(toy_sd15, log_lines):
    model = build_model(type='StableDiffusion', model=toy_sd15)
    long, short = long_and_short(model)
    with torch.no_grad():
        emb_long, _ = model.encode_prompt([long])
        emb_short, _ = model.encode_prompt([short])
    limit = model.tokenizer.model_max_length
    warnings = [m for m in log_lines if 'truncated' in m]
    assert warnings == [f'a prompt has 300 tokens; the tokenizer keeps '
                        f'{limit}, the rest is truncated']
    torch.testing.assert_close(emb_long, emb_short, rtol=0, atol=0)
    # A training step on over-long prompts: finite loss, UNet gradients.
    training_step(model, [long, long.replace('red', 'blue', 1)])


@pytest.mark.scenario
def test_batch_mixing_long_and_short_prompts_trains(sd15_model):
    long, short = long_and_short(sd15_model)
    training_step(sd15_model, [long, short])


# ------------------------------------------------ 9. trust_remote_code
@pytest.fixture
def loader_calls(monkeypatch):
    """(class, loader, trust_remote_code) of every pretrained load."""
    import diffusers
    import transformers
    calls = []
    for owner, name in ((transformers.PreTrainedModel, 'from_pretrained'),
                        (transformers.PreTrainedTokenizerBase,
                         'from_pretrained'),
                        (transformers.PretrainedConfig, 'from_pretrained'),
                        (diffusers.ModelMixin, 'from_pretrained'),
                        (diffusers.SchedulerMixin, 'from_pretrained'),
                        (diffusers.ConfigMixin, 'load_config'),
                        (diffusers.DiffusionPipeline, 'from_pretrained')):
        func = owner.__dict__[name].__func__

        def spy(cls, *args, _func=func, _name=name, **kwargs):
            calls.append((cls.__name__, _name,
                          kwargs.get('trust_remote_code')))
            return _func(cls, *args, **kwargs)

        monkeypatch.setattr(owner, name, classmethod(spy))
    return calls


@pytest.mark.scenario
def test_remote_code_is_trusted_only_where_the_config_asks(loader_calls,
                                                          toy_sd15):
    # No shape check (no pairs, no output KD): only loading is exercised.
    kw = dict(compression=dict(type='BKSDMSmall'), features=None,
              loss_weights=dict(output=0.0))
    distiller(toy_sd15, **kw)
    loaded = {cls for cls, _, _ in loader_calls}
    assert {'CLIPTokenizer', 'CLIPTextModel', 'AutoencoderKL',
            'DDPMScheduler', 'UNet2DConditionModel'} <= loaded, loaded
    assert [c for c in loader_calls if c[2] is not None] == []

    # The teacher dict's keys go to its from_pretrained: asking there
    # trusts that one load and no other.
    loader_calls.clear()
    distiller(toy_sd15, teacher=dict(model=toy_sd15, trust_remote_code=True),
              **kw)
    trusted = [c for c in loader_calls if c[2]]
    assert ('UNet2DConditionModel', 'from_pretrained', True) in trusted
    assert {cls for cls, _, _ in trusted} == {'UNet2DConditionModel'}
    assert sum(c[:2] == ('UNet2DConditionModel', 'from_pretrained')
               for c in trusted) == 1

    # No code path (inference, export, metrics) switches it on by itself.
    hits = []
    for top in ('diffkd', 'tools'):
        for dirpath, _, files in os.walk(osp.join(REPO, top)):
            for name in files:
                if name.endswith('.py'):
                    path = osp.join(dirpath, name)
                    with open(path) as f:
                        if re.search(r'trust_remote_code\s*=\s*True',
                                     f.read()):
                            hits.append(path)
    assert hits == []
