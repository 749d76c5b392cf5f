# Toy twin of configs/ssd_1b/ssd_1b_distill_from_sdxl.py: the SSD1B recipe
# applied unchanged to the toy SDXL teacher (trained on first use with
# configs/toy/sdxl_finetune_toy.py), layer-level KD, CPU-sized schedule.
_base_ = [
    '../_base_/datasets/toy_shapes.py',
    '../_base_/schedules/toy_distill.py',
]
teacher_model = 'diffkd-toy/sdxl-teacher'
model = dict(
    type='DiffusionDistiller',
    student=dict(type='StableDiffusionXL', model=teacher_model),
    teacher=dict(model=teacher_model),
    compression=dict(type='SSD1B'),
    student_init='teacher',
    features='layers',
    loss_weights=dict(task=1.0, output=0.5, feature=0.5))
# tools/test.py: the teacher samples the same prompts and seeds too
test_cfg = dict(teacher=True)
