# Toy twin of configs/bk_sdm/bk_sdm_base_distill_from_sd14.py.
_base_ = [
    '../_base_/datasets/toy_shapes.py',
    '../_base_/schedules/toy_distill.py',
]
teacher_model = 'diffkd-toy/sd15-teacher'
model = dict(
    type='DiffusionDistiller',
    student=dict(type='StableDiffusion', model=teacher_model),
    teacher=dict(model=teacher_model),
    compression=dict(type='BKSDMBase'),
    student_init='teacher',
    features='bk_sdm',
    loss_weights=dict(task=1.0, output=1.0, feature=1.0))
# tools/test.py: the teacher samples the same prompts and seeds too
test_cfg = dict(teacher=True)
