"""The short KD pass after a LoRA transplant
(configs/toy/ssd_1b_lora_transplant_toy.py): the teacher carries its LoRA
from a file, frozen; the student starts from the transplanted file; only
the student's LoRA trains. And the errors for a file that does not fit."""
import json

import pytest
import torch
from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
from mmengine.config import Config
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file

from diffkd.apis import load_pipeline
from diffkd.apis.config import train_config
from diffkd.apis.train import build_runner
from diffkd.engine.hooks.export_hook import unwrap
from diffkd.export.transplant import transplant_lora_file
from diffkd.models.compression import build_compression, init_from_teacher
from diffkd.models.lora import (add_lora, load_lora_file, save_lora,
                                set_lora_weights)
from tests.conftest import REPO, run_tool

TOY_LORA = Config.fromfile(
    f'{REPO}/configs/toy/ssd_1b_lora_transplant_toy.py').model.student.lora


@pytest.fixture(scope='module')
def files(tmp_path_factory, toy_sdxl):
    """A teacher LoRA file (the toy config's adapter, random weights), a
    toy SSD-1B student and the LoRA transplanted onto it."""
    tmp = tmp_path_factory.mktemp('transplant')
    teacher = UNet2DConditionModel.from_pretrained(toy_sdxl,
                                                   subfolder='unet')
    comp = build_compression(dict(type='SSD1B'))(dict(teacher.config))
    student = UNet2DConditionModel.from_config(comp.student_config)
    init_from_teacher(student, teacher, comp.module_map)
    student.save_pretrained(tmp / 'student' / 'unet')
    add_lora(teacher, rank=TOY_LORA.rank, alpha=TOY_LORA.alpha,
             target_modules=TOY_LORA.target_modules)
    torch.manual_seed(0)
    for name, p in teacher.named_parameters():
        if 'lora_B' in name:
            p.data.normal_(std=0.02)
    save_lora(StableDiffusionXLPipeline, str(tmp / 'teacher_lora'), teacher,
              {})
    teacher_lora = str(tmp / 'teacher_lora' /
                       'pytorch_lora_weights.safetensors')
    moved = str(tmp / 'student_lora.safetensors')
    transplant_lora_file(teacher_lora, dict(teacher.config), moved,
                         dict(type='SSD1B'))
    return dict(tmp=tmp, teacher_lora=teacher_lora, student_lora=moved,
                student=str(tmp / 'student'))


def lora_of(unet):
    return {k: v.clone() for k, v in get_peft_model_state_dict(unet).items()}


def base_of(unet):
    return {k: v.clone() for k, v in unet.state_dict().items()
            if 'lora_' not in k}


@pytest.fixture(scope='module')
def kd(files, toy_sdxl):
    """The toy KD pass for 2 iterations from ``files``: its runner, and the
    model's adapters and base weights before training."""
    tmp = files['tmp']
    cfg = Config.fromfile(f'{REPO}/configs/toy/ssd_1b_lora_transplant_toy.py')
    cfg.merge_from_dict({
        'model.student.model': toy_sdxl, 'model.teacher.model': toy_sdxl,
        'model.teacher.lora': str(tmp / 'teacher_lora'),
        'model.student.lora.weights': files['student_lora'],
        'model.student_pretrained.name_or_path': files['student'],
        'train_cfg.max_iters': 2, 'train_dataloader.batch_size': 2,
        'train_dataloader.dataset.num_class_images': 2,
        'train_dataloader.dataset.class_data_dir': str(tmp / 'class'),
        'train_dataloader.dataset.class_image_generation.'
        'num_inference_steps': 1,
        'custom_hooks.0.num_inference_steps': 1})
    cfg.custom_hooks[0].prompts = cfg.custom_hooks[0].prompts[:1]
    path = str(tmp / 'kd.py')
    cfg.dump(path)
    runner = build_runner(train_config(path, work_dir=str(tmp / 'work')))
    model = unwrap(runner.model)
    student, teacher = model.student.unet, model.teacher
    before = dict(
        student_lora=lora_of(student), teacher_lora=lora_of(teacher),
        student_base=base_of(student), teacher_base=base_of(teacher),
        trainable={n for n, p in model.named_parameters()
                   if p.requires_grad})
    runner.train()
    return dict(runner=runner, model=model, before=before,
                work_dir=str(tmp / 'work'))


@pytest.mark.slow
def test_kd_pass_trains_only_the_student_lora(files, kd):
    before, model = kd['before'], kd['model']
    student, teacher = model.student.unet, model.teacher
    # Both adapters started from their files.
    start = before['student_lora']
    moved = load_file(files['student_lora'])
    assert {f'unet.{k}' for k in start} == moved.keys()
    assert all(torch.equal(start[k[len('unet.'):]], v)
               for k, v in moved.items())
    t_file = load_file(files['teacher_lora'])
    assert {f'unet.{k}' for k in before['teacher_lora']} == t_file.keys()
    assert all(torch.equal(before['teacher_lora'][k[len('unet.'):]], v)
               for k, v in t_file.items())
    trainable = before['trainable']
    assert trainable and all('lora_' in n and n.startswith('student.unet.')
                             for n in trainable)

    assert kd['runner'].iter == 2
    after = lora_of(student)
    assert any(not torch.equal(after[k], start[k]) for k in start)
    for old, now in ((before['student_base'], base_of(student)),
                     (before['teacher_base'], base_of(teacher)),
                     (before['teacher_lora'], lora_of(teacher))):
        assert old.keys() == now.keys()
        assert all(torch.equal(old[k], now[k]) for k in old)

    # The export is the student with its trained LoRA, on its own UNet.
    pipe = load_pipeline(kd['work_dir'])
    assert pipe.unet.config.transformer_layers_per_block == \
        student.config.transformer_layers_per_block
    loaded = get_peft_model_state_dict(
        pipe.unet, adapter_name=pipe.get_list_adapters()['unet'][0])
    assert all(torch.equal(loaded[k], after[k]) for k in after)


def test_transplant_score_tool(files, kd, toy_sdxl, capsys):
    # The teacher LoRA and the student as the exports their runs write.
    for folder, part in ((files['tmp'] / 'teacher_lora', 'lora'),
                         (files['tmp'] / 'student', 'unet')):
        export = folder.parent / f'{folder.name}_run' / 'final'
        export.mkdir(parents=True)
        (export / part).symlink_to(folder if part == 'lora'
                                   else folder / 'unet')
        (export / 'export_info.json').write_text(json.dumps(dict(
            base_model=toy_sdxl, parts=[part],
            pipeline_class='StableDiffusionXLPipeline')))
    rows = run_tool('analysis_tools/transplant_score.py', [
        str(files['tmp'] / 'teacher_lora_run'),
        str(files['tmp'] / 'student_run'), '--kd', kd['work_dir'],
        '--num-images', '2', '--steps', '2'])
    assert [(r['model'], r['lora']) for r in rows] == [
        ('teacher', 'its LoRA'),
        ('student', "teacher's LoRA transplanted, no KD"),
        ('student', 'transplanted, after the KD pass')]
    for r in rows:
        assert 0 <= r['rate'] <= 1 and sum(r['colours'].values()) == 2
    table = capsys.readouterr().out.strip().splitlines()
    assert table[0] == '| UNet | LoRA | concept rate | colours |'
    assert len(table) == 2 + len(rows)
    assert all(row.count('|') == 5 and ' / 2 (' in row
               for row in table[2:])


def student_with_adapter(files, **kw):
    unet = UNet2DConditionModel.from_pretrained(files['student'],
                                                subfolder='unet')
    return add_lora(unet, **dict(dict(rank=TOY_LORA.rank,
                                      alpha=TOY_LORA.alpha,
                                      target_modules=TOY_LORA.target_modules),
                                 **kw))


def test_a_lora_file_that_does_not_fit_is_refused(files, toy_sdxl):
    # The teacher's own file on the student: layers the student lacks.
    with pytest.raises(ValueError, match='does not fit the adapter') as err:
        set_lora_weights(student_with_adapter(files), files['teacher_lora'])
    assert 'transplant_lora.py' in str(err.value)
    # Another rank than the file's.
    with pytest.raises(ValueError, match='r=16.*r=4'):
        set_lora_weights(student_with_adapter(files, rank=4),
                         files['student_lora'])
    # A folder without a LoRA file.
    with pytest.raises(FileNotFoundError, match='no diffusers LoRA file'):
        load_lora_file(UNet2DConditionModel.from_pretrained(
            toy_sdxl, subfolder='unet'), files['student'])
    # A file with weights for a layer the teacher does not have.
    state = load_file(files['teacher_lora'])
    key = next(iter(state))
    state[key.replace('unet.', 'unet.ghost_blocks.', 1)] = state[key].clone()
    bad = str(files['tmp'] / 'bad.safetensors')
    save_file(state, bad)
    with pytest.raises(ValueError, match='name no layer of the teacher'):
        load_lora_file(UNet2DConditionModel.from_pretrained(
            toy_sdxl, subfolder='unet'), bad)
