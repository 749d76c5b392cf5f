"""The sample grid: a distiller's shows the teacher's row above the
student's for the same prompts and seeds; prompts are written under the
columns."""
import types
from unittest import mock

import numpy as np
import pytest
import torch
from mmengine.registry import DefaultScope
from PIL import Image

from diffkd.engine.hooks import VisualizationHook, sample_grid
from diffkd.registry import MODELS

PROMPTS = ['a red circle on a blue background',
           'a green triangle on a white background']
SIZE, UPSCALE = 32, 2


def grid_of(model, tmp_path, name):
    hook = VisualizationHook(PROMPTS, num_inference_steps=2,
                             guidance_scale=4.0, upscale=UPSCALE)
    runner = types.SimpleNamespace(
        model=model, work_dir=str(tmp_path / name),
        visualizer=mock.Mock(), logger=mock.Mock())
    # One thread: on shared cores, OpenMP threads waiting for each other
    # make every small kernel slow.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        hook.after_train(types.SimpleNamespace(**vars(runner), iter=3))
    finally:
        torch.set_num_threads(threads)
    grid = np.asarray(Image.open(tmp_path / name / 'vis' / 'iter_3.png'))
    runner.visualizer.add_image.assert_called_once()
    sent = runner.visualizer.add_image.call_args.args[1]
    np.testing.assert_array_equal(sent, grid)
    return grid, hook


@pytest.fixture(scope='module')
def grids(tmp_path_factory, toy_sdxl):
    tmp = tmp_path_factory.mktemp('vis')
    with DefaultScope.overwrite_default_scope('diffkd'):
        distiller = MODELS.build(dict(
            type='DiffusionDistiller',
            student=dict(type='StableDiffusionXL', model=toy_sdxl),
            teacher=dict(model=toy_sdxl), compression=dict(type='SSD1B'),
            features='layers'))
        plain = MODELS.build(dict(type='StableDiffusionXL', model=toy_sdxl))
    return (grid_of(distiller, tmp, 'distill'), grid_of(plain, tmp, 'plain'))


def test_distiller_grid_has_a_teacher_row_above_the_student_row(grids):
    (two, _), (one, _) = grids
    row = SIZE * UPSCALE
    # Same prompts, same caption band: one image row more.
    assert two.shape[0] - one.shape[0] == row
    label_w = two.shape[1] - one.shape[1]
    assert label_w > 0  # the "teacher" / "student" labels
    images = two[:2 * row, label_w:]
    teacher, student = images[:row], images[row:]
    assert not np.array_equal(teacher, student)
    # The teacher here is the plain model's UNet: its row is the plain
    # model's images for the same prompts and seeds.
    np.testing.assert_array_equal(teacher, one[:row])


def test_prompts_are_written_under_the_columns(grids):
    (two, _), (one, _) = grids
    for grid in (one, two):
        band = grid[-(one.shape[0] - SIZE * UPSCALE):]
        assert (band < 100).any(axis=-1).sum() > 50, 'no caption text'
        # Text under each column.
        width = SIZE * UPSCALE
        cols = [band[:, -(i + 1) * width:grid.shape[1] - i * width]
                for i in range(len(PROMPTS))]
        assert all((c < 100).any() for c in cols)


def test_teacher_row_is_sampled_once_per_teacher():
    asked = []

    class Distiller:
        teacher, teacher_source = object(), 'teacher-a'
        samples_teacher = True

        def __call__(self, inputs, mode):
            asked.append(inputs['sampling'].get('teacher', False))
            image = np.full((8, 8, 3), len(asked), np.uint8)
            return [dict(image=image, teacher_image=image)
                    for _ in inputs['text']]

    hook, model = VisualizationHook(['a', 'b']), Distiller()
    first, second = hook._rows(model), hook._rows(model)
    assert asked == [True, False]
    assert first['teacher'] is second['teacher']
    assert first['student'][0].getpixel((0, 0)) == (1, 1, 1)
    assert second['student'][0].getpixel((0, 0)) == (2, 2, 2)
    # TeacherScheduleHook switched the teacher: a new teacher row.
    model.teacher_source = 'teacher-b'
    hook._rows(model)
    assert asked[-1] is True


def test_a_teacher_that_is_no_sampler_gets_no_row():
    """A consistency distiller's teacher is no few-step sampler: the grid
    shows the student alone, and the model is not asked for the teacher."""
    asked = []

    class ConsistencyDistiller:
        teacher, teacher_source = object(), 'teacher-a'

        def __call__(self, inputs, mode):
            asked.append(inputs['sampling'].get('teacher', False))
            return [dict(image=np.zeros((8, 8, 3), np.uint8))
                    for _ in inputs['text']]

    rows = VisualizationHook(['a', 'b'])._rows(ConsistencyDistiller())
    assert asked == [False] and list(rows) == ['']


def test_sample_grid_checks_its_rows():
    im = Image.new('RGB', (8, 8))
    with pytest.raises(ValueError, match='one per caption'):
        sample_grid([[im], [im, im]], ['a', 'b'])
    grid = sample_grid([[im, im]], ['a', 'b'], upscale=3)
    assert grid.width == 2 * 8 * 3 and grid.height > 8 * 3
