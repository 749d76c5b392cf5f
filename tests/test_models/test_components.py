"""Components taken from elsewhere than the base pipeline (a fixed VAE, a
student's UNet): used in training and sampling, recorded in exports."""
import pytest
import torch
from diffusers import AutoencoderKL, DiffusionPipeline
from mmengine.registry import DefaultScope

from diffkd.apis import load_export_info, load_pipeline
from diffkd.engine.hooks import export_model
from diffkd.models.diffusion.frozen import frozen_children, frozen_modules
from diffkd.registry import MODELS


def build(**cfg):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(cfg)


@pytest.fixture(scope='module')
def other_vae(toy_sdxl, tmp_path_factory):
    """The toy VAE with different weights, saved as a stand-alone folder
    (as ``madebyollin/sdxl-vae-fp16-fix`` is on the hub)."""
    vae = AutoencoderKL.from_pretrained(toy_sdxl, subfolder='vae')
    torch.manual_seed(0)
    with torch.no_grad():
        for p in vae.parameters():
            p.mul_(1.5).add_(0.01 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp('fixed-vae')
    vae.save_pretrained(folder)
    return str(folder), vae.state_dict()


def assert_same_weights(module, state):
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0,
                                   msg=name)


@pytest.mark.parametrize('form', ['path', 'dict'])
def test_a_vae_from_elsewhere_encodes_samples_and_exports(
        form, other_vae, toy_sdxl, tmp_path):
    folder, state = other_vae
    spec = folder if form == 'path' else dict(name_or_path=folder)
    model = build(type='StableDiffusionXL', model=toy_sdxl,
                  components=dict(vae=spec))
    assert_same_weights(model.vae, state)
    assert model.pipeline().vae is model.vae  # samples decode with it
    base = build(type='StableDiffusionXL', model=toy_sdxl)
    img = torch.rand(1, 3, 32, 32) * 2 - 1
    gen = [torch.Generator().manual_seed(0)]
    assert not torch.allclose(model.encode_images(img, gen),
                              base.encode_images(img, gen))

    export = export_model(model, str(tmp_path / 'export'), step=0)
    assert load_export_info(export)['components']['vae'] == {
        'class': 'AutoencoderKL', 'name_or_path': folder, 'subfolder': None}
    pipe = load_pipeline(str(tmp_path / 'export'))
    assert_same_weights(pipe.vae, state)
    torch.testing.assert_close(pipe.unet.state_dict(),
                               model.unet.state_dict())
    # As a complete pipeline folder, plain diffusers gets the same VAE.
    final = export_model(model, str(tmp_path / 'final'), step=0,
                         full_pipeline=True)
    origin = load_export_info(final)['component_origin']
    assert origin['vae'] == 'source' and origin['text_encoder'] == 'base'
    assert_same_weights(
        DiffusionPipeline.from_pretrained(final).vae, state)


def test_an_unknown_component_is_named_with_the_valid_ones(toy_sdxl):
    with pytest.raises(ValueError) as err:
        build(type='StableDiffusionXL', model=toy_sdxl,
              components=dict(vea='somewhere'))
    msg = str(err.value)
    assert "unknown component 'vea' (did you mean 'vae'?)" in msg
    assert 'text_encoder_2' in msg and 'tokenizer_2' in msg
    with pytest.raises(ValueError, match=r"unet=\.\.\."):
        build(type='StableDiffusion', model=toy_sdxl,
              components=dict(unet='somewhere'))


def test_frozen_parts_are_found_at_the_right_depth(toy_sd15):
    model = build(type='StableDiffusion', model=toy_sd15,
                  lora=dict(rank=2))
    assert sorted(frozen_children(model)) == ['text_encoder', 'vae']
    deep = dict(frozen_modules(model))
    assert {'vae', 'text_encoder'} <= set(deep)
    # LoRA: the UNet trains in part, its frozen base layers are listed
    # inside it, never a module holding an adapter.
    inside = [n for n in deep if n.startswith('unet.')]
    assert inside
    assert not any('lora' in n for name in inside
                   for n, _ in deep[name].named_parameters())
