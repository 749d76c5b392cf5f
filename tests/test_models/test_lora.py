"""LoRA through peft, saved where diffusers' load_lora_weights finds it."""
import os.path as osp

import pytest
import torch
from diffusers import DiffusionPipeline
from mmengine.registry import DefaultScope

from diffkd.apis import load_pipeline
from diffkd.registry import MODELS
from tests.conftest import run_config


def build(**cfg):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(cfg)


@pytest.mark.parametrize('kind', ['sd15', 'sdxl'])
def test_only_lora_weights_train(kind, request):
    path = request.getfixturevalue(f'toy_{kind}')
    model = build(type='StableDiffusionXL' if kind == 'sdxl' else
                  'StableDiffusion', model=path,
                  lora=dict(rank=4, text_encoder=True))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all('lora' in n for n in trainable)
    assert any(n.startswith('unet.') for n in trainable)
    assert any(n.startswith('text_encoder.') for n in trainable)
    with pytest.raises(ValueError, match='match no module'):
        build(type='StableDiffusion', model=path,
              lora=dict(target_modules=['not_a_layer']))


def test_lora_run_loads_with_plain_diffusers(tmp_path, toy_sdxl):
    work = run_config(
        'toy/sdxl_lora_toy.py', tmp_path / 'lora', f'model.model={toy_sdxl}',
        'train_cfg.max_iters=3', 'train_dataloader.batch_size=4',
        'optim_wrapper.optimizer.lr=0.05', 'custom_hooks.0.interval=0',
        'custom_hooks.0.num_inference_steps=1')
    lora_dir = osp.join(work, 'final', 'lora')
    assert osp.isfile(osp.join(lora_dir, 'pytorch_lora_weights.safetensors'))
    # Beside it, the kohya/A1111 file (tests/test_export/test_lora_formats)
    assert osp.isfile(osp.join(lora_dir, 'lora_kohya.safetensors'))
    # final/ is a full pipeline; its UNet is the base's, untrained.
    base_unet = osp.join(toy_sdxl, 'unet', 'config.json')
    assert open(osp.join(work, 'final', 'unet', 'config.json')).read() == \
        open(base_unet).read()

    def sample(pipe):
        gen = torch.Generator().manual_seed(0)
        return pipe('a red circle on a blue background', generator=gen,
                    num_inference_steps=2, output_type='np').images

    # The snippet from the SSD-1B post, with local paths.
    pipe = DiffusionPipeline.from_pretrained(toy_sdxl)
    without = sample(pipe)
    pipe.load_lora_weights(lora_dir)
    with_lora = sample(pipe)
    assert with_lora.shape == (1, 32, 32, 3)
    assert not torch.allclose(torch.from_numpy(without),
                              torch.from_numpy(with_lora))
    # tools/infer.py's loader applies the LoRA to the recorded base.
    again = sample(load_pipeline(work))
    torch.testing.assert_close(torch.from_numpy(again),
                               torch.from_numpy(with_lora))


def test_lora_on_a_distilled_student_records_its_unet(tmp_path, toy_sdxl):
    from diffusers import UNet2DConditionModel

    from diffkd.engine.hooks import export_model
    from diffkd.models.compression import build_compression
    teacher = UNet2DConditionModel.from_pretrained(toy_sdxl, subfolder='unet')
    cfg = build_compression(dict(type='SSD1B'))(
        dict(teacher.config)).student_config
    UNet2DConditionModel.from_config(cfg).save_pretrained(tmp_path / 'ssd')
    model = build(type='StableDiffusionXL', model=toy_sdxl,
                  unet=str(tmp_path / 'ssd'), lora=dict(rank=4))
    export_model(model, str(tmp_path / 'export'), step=0)
    pipe = load_pipeline(str(tmp_path / 'export'))
    assert pipe.unet.config.mid_block_type == 'UNetMidBlock2D'
    assert any('lora' in n for n, _ in pipe.unet.named_parameters())


@pytest.mark.parametrize('kind', ['sd15', 'sdxl'])
def test_loaded_lora_reproduces_the_trained_model(kind, request, tmp_path):
    # Adapters on attention and ResNet convs, on the text encoder too, with
    # alpha != rank: plain diffusers must apply every one of them at the
    # same scale, so its samples equal the training wrapper's own.
    from diffkd.engine.hooks import export_model
    path = request.getfixturevalue(f'toy_{kind}')
    model = build(type='StableDiffusionXL' if kind == 'sdxl' else
                  'StableDiffusion', model=path,
                  lora=dict(rank=4, alpha=8, text_encoder=True,
                            target_modules=['to_q', 'to_k', 'to_v',
                                            'to_out.0', 'conv1', 'conv2']))
    gen = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        if 'lora_B' in name:  # trained adapters are not zero
            p.data.normal_(0, 0.05, generator=gen)
    export_model(model, str(tmp_path / 'export'), step=0)

    pipe = DiffusionPipeline.from_pretrained(path)
    pipe.load_lora_weights(str(tmp_path / 'export' / 'lora'))

    def adapted(module):
        return {n for n, m in module.named_modules() if hasattr(m, 'lora_A')
                and m.lora_A}
    assert adapted(pipe.unet) == adapted(model.unet)
    assert len(adapted(pipe.text_encoder)) == len(
        adapted(model.text_encoder)) > 0
    prompt, kw = 'a red circle on a blue background', dict(
        num_inference_steps=2, guidance_scale=3.0, output_type='np')
    expected = model.generate([prompt], seeds=[0], **kw)[0]
    got = pipe(prompt, generator=torch.Generator().manual_seed(0),
               **kw).images[0]
    torch.testing.assert_close(torch.from_numpy(got),
                               torch.from_numpy(expected), atol=1e-4,
                               rtol=0)
