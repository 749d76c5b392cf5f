# configs/toy/ssd_1b_distill_toy.py trained from WebDataset shards with
# aspect-ratio buckets: the toy twin of the real SSD-1B config's data path
# (configs/ssd_1b/ssd_1b_distill_from_sdxl.py). Needs
#   python tools/build_toy_world.py --only shapes-shards sdxl-teacher
_base_ = [
    '../_base_/datasets/toy_shapes_shards.py',
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
test_cfg = dict(teacher=True)
# Samples of the landscape bucket: the student keeps the multi-aspect
# ability the shards teach.
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts={{_base_.vis_prompts}},
        interval=150,
        num_inference_steps=20,
        guidance_scale=4.0,
        upscale=4,
        height=32,
        width=48),
    dict(type='DiffusersExportHook'),
]
# The stream shuffles per epoch itself (no sampler to seed).
default_hooks = dict(sampler_seed=None)
