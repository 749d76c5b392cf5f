"""Golden tests of block-level knowledge distillation on the toy world."""
import pytest
import torch
from mmengine.registry import DefaultScope

from diffkd.models.compression import IncompatibleTeacherError
from diffkd.models.distill import DistillConfigError
from diffkd.registry import MODELS


def build(**kw):
    with DefaultScope.overwrite_default_scope('diffkd'):
        return MODELS.build(dict(type='DiffusionDistiller', **kw))


def xl(path, **kw):
    return build(student=dict(type='StableDiffusionXL', model=path),
                 teacher=dict(model=path), **kw)


def data(model, n=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    inputs = dict(img=torch.rand(n, 3, 32, 32, generator=g) * 2 - 1,
                  text=['a red circle on a blue background'] * n,
                  time_ids=torch.tensor([[32., 32, 0, 0, 32, 32]] * n))
    return model.data_preprocessor(dict(inputs=inputs), True)


def step(model, seed=0):
    torch.manual_seed(seed)
    return model(**data(model), mode='loss')


def test_kd_vanishes_for_a_copy_of_the_teacher(toy_sdxl):
    model = xl(toy_sdxl, compression=None, features='layers')
    assert model.teacher is not model.student.unet
    # Same weights, same input, inference mode: equal up to float rounding.
    # CPU kernels do not promise bit-identical results for two modules with
    # equal weights (a run gave 2.3e-14, not 0), so each term is bounded by
    # its teacher tensor's mean square: a relative RMS error of 1e-5, far
    # below any real difference (bf16 rounding alone is ~4e-3).
    teacher_out = {}
    model.teacher.register_forward_hook(
        lambda m, a, out: teacher_out.update(out=out.sample))
    features = {}
    clear = model.teacher_recorder.clear

    def keep():
        features.update(model.teacher_recorder.outputs)
        clear()

    model.teacher_recorder.clear = keep
    model.eval()
    for seed in range(3):
        with torch.no_grad():
            losses = step(model, seed)
        power = teacher_out['out'].pow(2).mean().item()
        assert losses['loss_kd_out'].item() <= 1e-10 * power, seed
        for s, t in model.pairs:
            bound = 1e-10 * features[t].float().pow(2).mean().item()
            assert losses[f'kd_feat/{s}'].item() <= bound, (seed, s)
        assert losses['loss_task'].item() > 1e-3


def test_every_pair_records_exactly_once_and_nothing_is_kept(toy_sdxl):
    model = xl(toy_sdxl, compression=dict(type='SSD1B'), features='layers')
    seen = {}
    original = model.student_recorder.clear

    def capture():
        seen['student'] = dict(model.student_recorder.counts)
        seen['teacher'] = dict(model.teacher_recorder.counts)
        original()

    model.student_recorder.clear = capture
    step(model)
    assert seen['student'] == {s: 1 for s, _ in model.pairs}
    assert seen['teacher'] == {t: 1 for _, t in model.pairs}
    assert model.student_recorder.outputs == {}
    assert model.teacher_recorder.outputs == {}
    # Outside a training step nothing records (e.g. sampling).
    model.generate(['a red circle on a blue background'],
                   num_inference_steps=1)
    assert model.student_recorder.outputs == {}


def test_each_weight_is_applied_once(toy_sdxl):
    kw = dict(compression=dict(type='KOALA700M'), features='self_attention',
              log_pairs=True)
    ones = xl(toy_sdxl, loss_weights=dict(task=1, output=1, feature=1), **kw)
    other = xl(toy_sdxl, loss_weights=dict(task=2, output=3, feature=5), **kw)
    a, b = step(ones), step(other)
    for key, w in (('loss_task', 2), ('loss_kd_out', 3), ('loss_kd_feat', 5)):
        torch.testing.assert_close(b[key], w * a[key])
    pair_sum = sum(v for k, v in a.items() if k.startswith('kd_feat/'))
    torch.testing.assert_close(a['loss_kd_feat'], pair_sum)


def test_teacher_stays_frozen_and_out_of_checkpoints(toy_sdxl):
    model = xl(toy_sdxl, compression=dict(type='SSD1B'), features='layers')
    assert not any(p.requires_grad for p in model.teacher.parameters())
    model.train()
    assert not model.teacher.training
    keys = list(model.state_dict())
    assert keys and all(k.startswith('student.unet.') for k in keys)
    losses = step(model)
    sum(v for k, v in losses.items() if k.startswith('loss')).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.student.unet.conv_in.weight.grad is not None


def test_train_mode_reaches_only_what_trains(toy_sdxl):
    model = xl(toy_sdxl, compression=dict(type='SSD1B'), features='layers')
    frozen = [model.teacher, model.student.vae, model.student.text_encoder,
              model.student.text_encoder_2]
    for _ in range(2):  # the second call takes the shortcut
        model.train()
        assert all(m.training for m in model.student.unet.modules())
        assert not any(m.training for f in frozen for m in f.modules())
        model.eval()
        assert not any(m.training for m in model.modules())
    model.student.train()  # a child switched on its own is followed too
    assert model.student.unet.training
    model.train()
    assert all(m.training for m in model.student.unet.modules())


def test_feature_normalisation_divides_by_teacher_power(toy_sdxl):
    kw = dict(compression=dict(type='SSD1B'), features=['mid_block'])
    plain = step(xl(toy_sdxl, **kw))
    norm = step(xl(toy_sdxl, normalize_features=True, **kw))
    assert plain['loss_kd_feat'] > 0
    assert not torch.allclose(plain['loss_kd_feat'], norm['loss_kd_feat'])


def test_sdxl_recipe_on_sd_teacher_fails_at_build(toy_sd15):
    with pytest.raises(IncompatibleTeacherError, match='3-stage'):
        build(student=dict(type='StableDiffusion', model=toy_sd15),
              teacher=dict(model=toy_sd15), compression=dict(type='SSD1B'))


def test_pattern_matching_nothing_fails_at_build(toy_sdxl):
    with pytest.raises(ValueError, match="pattern 'encoder.*' matches no"):
        xl(toy_sdxl, compression=dict(type='SSD1B'), features=['encoder.*'])
    with pytest.raises(KeyError, match='unknown feature preset'):
        xl(toy_sdxl, compression=dict(type='SSD1B'), features='everything')


def test_mismatched_pair_shapes_fail_at_build(toy_sdxl):
    with pytest.raises(DistillConfigError,
                       match=r"student 'down_blocks.0' .* teacher "
                       r"'down_blocks.2'.*shapes do not match"):
        xl(toy_sdxl, compression=dict(type='SSD1B'), features=None,
           pairs=[('down_blocks.0', 'down_blocks.2')])
    with pytest.raises(DistillConfigError, match="no module 'nope'"):
        xl(toy_sdxl, compression=None, features=None,
           pairs=[('down_blocks.0', 'nope')])


def test_pretrained_student_must_match_the_recipe(toy_sdxl, tmp_path):
    model = xl(toy_sdxl, compression=dict(type='SSD1B'), features='layers')
    model.student.unet.save_pretrained(tmp_path / 'ssd')
    again = xl(toy_sdxl, compression=dict(type='SSD1B'), features='layers',
               student_init='pretrained',
               student_pretrained=dict(name_or_path=str(tmp_path / 'ssd')))
    for (n, a), b in zip(model.student.unet.state_dict().items(),
                         again.student.unet.state_dict().values()):
        assert torch.equal(a, b), n
    with pytest.raises(DistillConfigError, match='architecture'):
        xl(toy_sdxl, compression=dict(type='KOALA700M'),
           student_init='pretrained',
           student_pretrained=dict(name_or_path=str(tmp_path / 'ssd')))


def test_teacher_in_lower_precision(toy_sdxl):
    model = build(student=dict(type='StableDiffusionXL', model=toy_sdxl),
                  teacher=dict(model=toy_sdxl, dtype='bfloat16'),
                  compression=dict(type='SSD1B'), features='layers')
    assert next(model.teacher.parameters()).dtype == torch.bfloat16
    losses = step(model)
    assert all(torch.isfinite(v) for v in losses.values())


def test_teachers_in_succession(toy_sdxl, tmp_path):
    from diffusers import UNet2DConditionModel
    model = xl(toy_sdxl, compression=dict(type='SSD1B'), features='layers')
    expert = UNet2DConditionModel.from_pretrained(toy_sdxl, subfolder='unet')
    with torch.no_grad():
        for p in expert.parameters():
            p.mul_(0.5)
    expert.save_pretrained(tmp_path / 'expert')
    before = step(model)
    model.switch_teacher(str(tmp_path / 'expert'), subfolder=None)
    torch.testing.assert_close(model.teacher.conv_in.weight,
                               expert.conv_in.weight)
    after = step(model)
    # Same student and batch, another teacher: the KD terms move, the task
    # term does not; hooks still record on the loaded teacher.
    torch.testing.assert_close(after['loss_task'], before['loss_task'])
    assert not torch.allclose(after['loss_kd_out'], before['loss_kd_out'])
    assert 'kd_feat/mid_block' in after
    with pytest.raises(DistillConfigError, match='architecture'):
        small = xl(toy_sdxl, compression=dict(type='KOALA700M'))
        small.student.unet.save_pretrained(tmp_path / 'small')
        model.switch_teacher(str(tmp_path / 'small'), subfolder=None)


def test_student_loss_is_the_task_loss(toy_sdxl):
    snr = dict(type='SNRL2Loss', snr_gamma=5.0)
    kw = dict(compression=dict(type='SSD1B'), features=None)
    given = build(student=dict(type='StableDiffusionXL', model=toy_sdxl,
                               loss=snr),
                  teacher=dict(model=toy_sdxl), **kw)
    assert type(given.task_loss).__name__ == 'SNRL2Loss'
    explicit = xl(toy_sdxl, task_loss=snr, **kw)
    plain = xl(toy_sdxl, **kw)
    a, b, c = step(given), step(explicit), step(plain)
    torch.testing.assert_close(a['loss_task'], b['loss_task'])
    assert not torch.allclose(a['loss_task'], c['loss_task'])
    with pytest.raises(DistillConfigError,
                       match=r"task loss is given twice: student.loss="):
        build(student=dict(type='StableDiffusionXL', model=toy_sdxl,
                           loss=snr),
              teacher=dict(model=toy_sdxl), task_loss=dict(type='L2Loss'),
              **kw)


def test_dreambooth_class_rows_get_the_prior_weight(toy_sdxl):
    model = build(student=dict(type='StableDiffusionXL', model=toy_sdxl,
                               prior_loss_weight=0.3),
                  teacher=dict(model=toy_sdxl),
                  compression=dict(type='SSD1B'), features=None,
                  loss_weights=dict(task=2.0))
    batch = data(model, n=4)
    batch['inputs']['is_prior'] = torch.tensor([False, False, True, True])
    torch.manual_seed(0)
    losses = model(**batch, mode='loss')
    # The student alone, same draws: its DreamBooth loss split.
    torch.manual_seed(0)
    alone = model.student(**batch, mode='loss')
    torch.testing.assert_close(losses['loss_task'],
                               2.0 * alone['loss_instance'])
    torch.testing.assert_close(losses['loss_task_prior'],
                               2.0 * alone['loss_prior'])
    assert alone['loss_prior'] > 0
    # KD covers every row, instance and class alike.
    assert 'loss_kd_out' in losses
