"""Toy DreamBooth-LoRA runs: per-checkpoint and final LoRA exports that
plain diffusers loads, on a teacher and on a distilled student."""
import glob
import json
import os.path as osp
import sys

import pytest
import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel

from diffkd.apis import load_pipeline
from diffkd.evaluation.toy import evaluate_toy_concept
from diffkd.models.compression import build_compression, init_from_teacher
from tests.conftest import REPO, run_config


def quick(base, *extra):
    """Options that shrink the toy DreamBooth config to a few seconds."""
    return (f'model.model={base}',
            f'train_dataloader.dataset.class_image_generation.model={base}',
            'train_dataloader.dataset.class_image_generation'
            '.num_inference_steps=1',
            'train_dataloader.dataset.num_class_images=4',
            'train_dataloader.batch_size=2', 'train_cfg.max_iters=4',
            'param_scheduler.0.end=2', 'param_scheduler.1.begin=2',
            'param_scheduler.1.end=4', 'default_hooks.checkpoint.interval=2',
            'custom_hooks.0.interval=0', 'custom_hooks.1.interval=2', *extra)


def sample(pipe, prompt='a sks circle'):
    gen = torch.Generator().manual_seed(0)
    return torch.from_numpy(
        pipe(prompt, generator=gen, num_inference_steps=2,
             output_type='np').images)


@pytest.fixture(scope='module')
def teacher_run(tmp_path_factory, toy_sdxl):
    work = tmp_path_factory.mktemp('db') / 'teacher'
    return run_config('toy/sdxl_dreambooth_lora_toy.py', work,
                      *quick(toy_sdxl))


def test_lora_is_exported_per_checkpoint_and_at_the_end(teacher_run):
    for folder in ('iter_2', 'final'):
        assert osp.isfile(
            osp.join(teacher_run, folder, 'lora',
                     'pytorch_lora_weights.safetensors'))
    assert osp.isfile(osp.join(teacher_run, 'iter_4.pth'))
    # final/ is a full pipeline: the UNet the LoRA was trained on comes
    # from the base pipeline, untrained.
    info = json.load(open(osp.join(teacher_run, 'final', 'export_info.json')))
    assert info['parts'] == ['lora']
    assert info['component_origin']['unet'] == 'base'
    assert not osp.exists(osp.join(teacher_run, 'iter_2', 'unet'))


def test_post_snippet_runs_on_the_result(teacher_run, toy_sdxl):
    # The SSD-1B post's snippet with local paths.
    pipe = DiffusionPipeline.from_pretrained(toy_sdxl)
    without = sample(pipe)
    pipe.load_lora_weights(teacher_run + '/final/lora')
    with_lora = sample(pipe)
    assert with_lora.shape == (1, 32, 32, 3)
    assert not torch.allclose(with_lora, without)


def test_class_images_are_cached_for_the_next_run(teacher_run, diffkd_home):
    cached = glob.glob(osp.join(diffkd_home, 'class_images', '*',
                                'class_*.png'))
    assert len(cached) == 4


def test_export_pipeline_fuses_the_lora(teacher_run, tmp_path):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import export_pipeline
    finally:
        sys.path.pop(0)
    out = str(tmp_path / 'fused')
    export_pipeline.main([teacher_run, out, '--fuse-lora'])
    fused = DiffusionPipeline.from_pretrained(out)
    torch.testing.assert_close(
        sample(fused), sample(load_pipeline(teacher_run)), atol=1e-4,
        rtol=0)
    with pytest.raises(SystemExit, match='exists'):
        export_pipeline.main([teacher_run, out])


def test_student_dreambooth_loads_on_the_exported_student(
        tmp_path, toy_sdxl):
    # A toy SSD-1B student initialised from the teacher's weights.
    teacher = UNet2DConditionModel.from_pretrained(toy_sdxl,
                                                   subfolder='unet')
    comp = build_compression(dict(type='SSD1B'))(dict(teacher.config))
    student = UNet2DConditionModel.from_config(comp.student_config)
    init_from_teacher(student, teacher, comp.module_map)
    student_dir = str(tmp_path / 'student_unet')
    student.save_pretrained(student_dir)

    work = run_config(
        'toy/ssd_1b_dreambooth_lora_toy.py', tmp_path / 'student_db',
        *quick(toy_sdxl, f'model.unet={student_dir}',
               'train_dataloader.dataset.class_image_generation'
               f'.unet={student_dir}'))
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import export_pipeline
    finally:
        sys.path.pop(0)
    # The student as a pipeline of its own (like segmind/SSD-1B on the
    # hub), then the post's snippet on it.
    student_pipeline = str(tmp_path / 'toy-ssd-1b')
    export_pipeline.main([work, student_pipeline])
    pipe = DiffusionPipeline.from_pretrained(student_pipeline)
    assert sum(p.numel() for p in pipe.unet.parameters()) == sum(
        p.numel() for p in student.parameters())
    pipe.load_lora_weights(work + '/final/lora')
    torch.testing.assert_close(sample(pipe), sample(load_pipeline(work)))


@pytest.mark.slow
def test_toy_concept_appears_with_the_lora_and_not_without(tmp_path):
    # The shipped config on the toy teacher, shortened to fit CI: 50
    # DreamBooth steps at four times its learning rate (16/16 rings with
    # the LoRA, 0/16 without, at 20 sampling steps in a trial, as at 8
    # images and 10 steps; the shipped 500 give 16/16, docs/results.md).
    work = run_config(
        'toy/sdxl_dreambooth_lora_toy.py', tmp_path / 'db',
        'train_cfg.max_iters=50', 'param_scheduler.1.end=50',
        'optim_wrapper.optimizer.lr=0.012',
        'default_hooks.checkpoint.interval=50',
        'custom_hooks.0.interval=50', 'custom_hooks.1.interval=50')
    pipe = load_pipeline(work)
    kw = dict(num_images=8, steps=10, guidance=2.0)
    with_lora = evaluate_toy_concept(pipe, **kw)['concept_rate']
    pipe.unload_lora_weights()
    without = evaluate_toy_concept(pipe, **kw)['concept_rate']
    assert with_lora >= 0.5, with_lora
    assert without <= 0.1, without
