"""diffkd.analysis.benchmark_infer without timing: which UNets a request
measures, and the measurement of a tiny one."""
import pytest
import torch

from diffkd.analysis.benchmark_infer import (PRESETS, BenchmarkError, Spec,
                                             apply_weights, build_unet,
                                             dedupe, measure,
                                             specs_from_archs)


def test_a_preset_shares_one_teacher_and_repeats_are_measured_once():
    specs = dedupe(specs_from_archs(['sd15', 'bk_sdm_tiny']))
    assert [s.name for s in specs] == PRESETS['sd15']
    teacher = specs[0]
    assert teacher.role == 'teacher' and teacher.teacher is None
    assert all(s.teacher is teacher for s in specs[1:])
    assert specs[1].source == 'BKSDMBase(shipped:sd15)'


def test_weights_need_exactly_one_target(tmp_path):
    specs = specs_from_archs(['bk_sdm_tiny', 'bk_sdm_small'])
    with pytest.raises(BenchmarkError, match=r'--student-weights needs '
                       r"exactly one student.*has 2: \['bk_sdm_tiny', "
                       r"'bk_sdm_small'\]"):
        apply_weights(specs, 'student', str(tmp_path))
    with pytest.raises(BenchmarkError, match='holds no '
                       'diffusion_pytorch_model weights'):
        apply_weights(specs[:1], 'student', str(tmp_path))


def test_measure_a_tiny_unet_from_a_state_dict(tmp_path, toy_sd15):
    from diffusers import UNet2DConditionModel
    unet = UNet2DConditionModel.from_pretrained(toy_sd15, subfolder='unet')
    # nested as in a training checkpoint
    path = tmp_path / 'iter_1.pth'
    torch.save(dict(state_dict={f'student.unet.{k}': v for k, v in
                                unet.state_dict().items()}), path)
    spec = Spec('toy', 'student', dict(unet.config), 'toy',
                weights=str(path), vae_scale=4)
    built = build_unet(spec, torch.float32, torch.device('cpu'))
    for k, v in unet.state_dict().items():
        assert torch.equal(built.state_dict()[k], v), k
    row, seconds = measure(spec, torch.float32, torch.device('cpu'),
                           resolution=16, steps=2, batch_size=1, warmup=0)
    assert row['latent_size'] == 4 and row['weights'] == str(path)
    assert row['params'] == sum(p.numel() for p in unet.parameters())
    assert row['latency_s_total'] == round(seconds, 6) > 0
    assert row['checkpoint_file_bytes'] == path.stat().st_size
    with pytest.raises(BenchmarkError, match='resolution 18 is not a '
                       'multiple of the VAE factor 4'):
        measure(spec, torch.float32, torch.device('cpu'), resolution=18)
