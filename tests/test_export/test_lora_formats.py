"""The kohya/A1111 LoRA file written beside diffusers' one loads through
diffusers' loader for that format and gives the same images."""
import os.path as osp

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionXLPipeline
from safetensors.torch import load_file

from diffkd.models.lora.kohya import KOHYA_WEIGHT_NAME
from diffkd.models.lora import TEXT_ENCODER_TARGETS, add_lora, save_lora


def sample(pipe):
    gen = torch.Generator().manual_seed(0)
    return pipe('a red circle', generator=gen, num_inference_steps=2,
                guidance_scale=1.0, output_type='pt').images


@pytest.mark.parametrize('use_dora', [False, True])
def test_kohya_lora_round_trip(toy_sdxl, tmp_path, use_dora):
    pipe = DiffusionPipeline.from_pretrained(toy_sdxl)
    plain = sample(pipe)
    # rank 4, alpha 2: the file must carry alpha, not the rank
    add_lora(pipe.unet, rank=4, alpha=2, use_dora=use_dora)
    add_lora(pipe.text_encoder, rank=4, alpha=2, use_dora=use_dora,
             default_targets=TEXT_ENCODER_TARGETS)
    assert any('lora_magnitude_vector' in n for n, _ in
               pipe.unet.named_parameters()) == use_dora
    torch.manual_seed(0)
    for module in (pipe.unet, pipe.text_encoder):
        for name, p in module.named_parameters():
            if 'lora_B' in name or 'lora_magnitude' in name:
                p.data += 0.05 * torch.randn_like(p)  # a trained adapter
    out = str(tmp_path / 'lora')
    save_lora(StableDiffusionXLPipeline, out, pipe.unet,
              {'text_encoder': pipe.text_encoder,
               'text_encoder_2': pipe.text_encoder_2})
    ref = DiffusionPipeline.from_pretrained(toy_sdxl)
    ref.load_lora_weights(out)  # picks diffusers' file, not the kohya one
    expected = sample(ref)
    assert not torch.allclose(expected, plain, atol=1e-3)
    if use_dora:
        assert not osp.exists(osp.join(out, KOHYA_WEIGHT_NAME))
        return
    kohya = load_file(osp.join(out, KOHYA_WEIGHT_NAME))
    assert any(k.startswith('lora_unet_') for k in kohya)
    assert any(k.startswith('lora_te1_') for k in kohya)
    alphas = {float(v) for k, v in kohya.items() if k.endswith('.alpha')}
    assert alphas == {2.0}
    other = DiffusionPipeline.from_pretrained(toy_sdxl)
    other.load_lora_weights(out, weight_name=KOHYA_WEIGHT_NAME)
    torch.testing.assert_close(sample(other), expected, atol=1e-5, rtol=0)


def test_dora_has_no_kohya_form():
    from diffkd.models.lora.kohya import to_kohya
    with pytest.raises(ValueError, match='to_q.lora_magnitude_vector'):
        to_kohya({'unet': {'a.to_q.lora_magnitude_vector':
                           torch.ones(2)}}, {'unet': 1})
