"""Published pipelines with random weights: the real architectures."""
import pytest
import torch

from diffkd.models.diffusion.random_init import (architecture_of,
                                                 build_random_pipeline)


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# Parameter counts of the published components (diffusers/transformers).
@pytest.mark.parametrize('name,unet,vae,text', [
    ('runwayml/stable-diffusion-v1-5', 859_520_964, 83_653_863,
     [123_060_480]),
    ('stabilityai/stable-diffusion-2-1', 865_910_724, 83_653_863,
     [340_387_840]),
    ('stabilityai/stable-diffusion-xl-base-1.0', 2_567_463_684, 83_653_863,
     [123_060_480, 694_659_840]),
])
def test_components_have_the_published_size(name, unet, vae, text):
    with torch.device('meta'):  # architecture only: no memory, no init time
        pipe = build_random_pipeline(name)
    assert _params(pipe.unet) == unet
    assert _params(pipe.vae) == vae
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if hasattr(
        pipe, 'text_encoder_2') else [])
    assert [_params(e) for e in encoders] == text
    assert pipe.tokenizer.model_max_length == 77


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match='stable-diffusion-v1-5'):
        architecture_of('someone/unknown-model')
