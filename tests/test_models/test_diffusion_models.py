import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope

from diffkd.registry import MODELS


def build(**cfg):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(cfg)


def batch(n=2, xl=False):
    inputs = dict(img=torch.rand(n, 3, 32, 32) * 2 - 1,
                  text=['a red circle on a blue background'] * n)
    if xl:
        inputs['time_ids'] = torch.tensor([[32., 32, 0, 0, 32, 32]] * n)
    return dict(inputs=inputs)


@pytest.fixture(scope='module')
def sd(toy_sd15):
    return build(type='StableDiffusion', model=toy_sd15)


@pytest.fixture(scope='module')
def sdxl(toy_sdxl):
    return build(type='StableDiffusionXL', model=toy_sdxl)


@pytest.mark.parametrize('which', ['sd', 'sdxl'])
def test_only_unet_trains_and_loss_is_finite(which, request):
    model = request.getfixturevalue(which)
    trainable = {n.split('.')[0] for n, p in model.named_parameters()
                 if p.requires_grad}
    assert trainable == {'unet'}
    data = model.data_preprocessor(batch(xl=which == 'sdxl'), True)
    loss = model(**data, mode='loss')['loss']
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.unet.conv_in.weight.grad is not None
    assert model.vae.encoder.conv_in.weight.grad is None
    model.zero_grad()


def test_checkpoint_holds_only_trained_parts(sd):
    keys = set(sd.state_dict())
    assert any(k.startswith('unet.') for k in keys)
    assert not any(k.startswith(('vae.', 'text_encoder.')) for k in keys)
    # Loading it back reports no frozen weights as missing.
    res = sd.load_state_dict(sd.state_dict(), strict=False)
    assert res.missing_keys == []


def test_sdxl_conditions_on_time_ids(sdxl):
    data = sdxl.data_preprocessor(batch(xl=True), True)
    prep = sdxl.prepare(data['inputs'])
    assert prep.encoder_hidden_states.shape[-1] == \
        sdxl.unet.config.cross_attention_dim
    assert prep.added_cond_kwargs['text_embeds'].shape == (2, 32)
    torch.testing.assert_close(prep.added_cond_kwargs['time_ids'],
                               data['inputs']['time_ids'])
    # Different crop conditioning gives a different prediction.
    other = dict(prep.added_cond_kwargs,
                 time_ids=prep.added_cond_kwargs['time_ids'] + 8)
    with torch.no_grad():
        a = sdxl.run_unet(sdxl.unet, prep)
        prep.added_cond_kwargs = other
        b = sdxl.run_unet(sdxl.unet, prep)
    assert not torch.allclose(a, b)


def test_v_prediction_target(toy_sd15):
    model = build(type='StableDiffusion', model=toy_sd15,
                  prediction_type='v_prediction')
    data = model.data_preprocessor(batch(), True)
    torch.manual_seed(0)
    prep = model.prepare(data['inputs'])
    torch.manual_seed(0)
    latents = model.encode_images(data['inputs']['img'])
    noise = torch.randn_like(latents)
    expected = model.noise_scheduler.get_velocity(latents, noise,
                                                  prep.timesteps)
    torch.testing.assert_close(prep.target, expected)
    with pytest.raises(ValueError, match='prediction_type'):
        build(type='StableDiffusion', model=toy_sd15, prediction_type='x0')


def test_min_snr_loss_weights_by_snr():
    loss = build(type='SNRL2Loss', snr_gamma=5.0)
    pred, target = torch.ones(2, 4, 2, 2), torch.zeros(2, 4, 2, 2)
    snr = torch.tensor([1.0, 20.0])
    # weights min(snr, 5)/snr = [1, 0.25] -> mean 0.625
    assert loss(pred, target, snr=snr).item() == pytest.approx(0.625)
    # v-prediction: min(snr, 5)/(snr+1) = [0.5, 5/21]
    assert loss(pred, target, snr=snr, prediction_type='v_prediction'
                ).item() == pytest.approx((0.5 + 5 / 21) / 2)
    assert build(type='L2Loss')(pred, target).item() == pytest.approx(1.0)


def test_noise_offset_shifts_noise_per_channel(toy_sd15):
    model = build(type='StableDiffusion', model=toy_sd15, noise_offset=1.0)
    data = model.data_preprocessor(batch(n=8), True)
    prep = model.prepare(data['inputs'])
    # The target is the noise; with a large offset its per-channel means
    # spread far more than unit-variance noise's would (~1/sqrt(64)).
    assert prep.target.mean(dim=(2, 3)).std() > 0.4


def test_generate_returns_one_image_per_prompt(sd):
    images = sd.generate(['a red circle on a blue background'] * 2,
                         seeds=[0, 0], num_inference_steps=2)
    assert len(images) == 2 and images[0].size == (32, 32)
    assert list(images[0].getdata()) == list(images[1].getdata())


def test_missing_component_names_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match='tokenizer'):
        build(type='StableDiffusion', model=str(tmp_path))


def test_long_prompt_is_truncated_with_warning(sd, caplog):
    long = ' '.join(['red'] * 100)
    ids = sd.tokenize(sd.tokenizer, [long])
    assert ids.shape == (1, sd.tokenizer.model_max_length)


def test_min_snr_is_finite_at_zero_terminal_snr():
    loss = build(type='SNRL2Loss', snr_gamma=5.0)
    pred, target = torch.ones(2, 4, 2, 2), torch.zeros(2, 4, 2, 2)
    snr = torch.tensor([0.0, 1.0])
    assert loss(pred, target, snr=snr).item() == pytest.approx(1.0)
    assert loss(pred, target, snr=snr,
                prediction_type='v_prediction').item() == pytest.approx(0.25)


@pytest.mark.parametrize('kind', ['sd15', 'sdxl'])
def test_batched_predict_matches_one_diffusers_call_per_prompt(
        kind, request):
    # Evaluation samples prompts in batches; each image must still be what
    # plain diffusers draws for that prompt and seed alone.
    from diffusers import DiffusionPipeline
    path = request.getfixturevalue(f'toy_{kind}')
    with DefaultScope.overwrite_default_scope('diffkd'):
        model = MODELS.build(dict(
            type='StableDiffusionXL' if kind == 'sdxl' else
            'StableDiffusion', model=path))
    pipe = DiffusionPipeline.from_pretrained(path)
    prompts = ['a red circle on a blue background',
               'a green square on a white background',
               'a blue triangle on a black background']
    kw = dict(num_inference_steps=3, guidance_scale=3.0)
    samples = model.predict(prompts, seeds=[5, 6, 7], indices=[0, 1, 2],
                            batch_size=2, **kw)
    for i, (prompt, sample) in enumerate(zip(prompts, samples)):
        alone = pipe(prompt, generator=torch.Generator().manual_seed(5 + i),
                     output_type='np', **kw).images[0]
        assert sample['seed'] == 5 + i and sample['prompt'] == prompt
        assert sample['image'].dtype == np.uint8
        np.testing.assert_allclose(sample['image'],
                                   (alone * 255).round(), atol=1)
        assert sample['latent'].shape == (4, 8, 8)


def test_teacher_sampling_needs_a_distiller(toy_sd15):
    model = build(type='StableDiffusion', model=toy_sd15)
    with pytest.raises(ValueError, match='needs a DiffusionDistiller'):
        model(dict(text=['a red circle on a blue background'], seed=[0],
                   sampling=dict(teacher=True)), mode='predict')
