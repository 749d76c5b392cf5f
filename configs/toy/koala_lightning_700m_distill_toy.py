# Toy twin of the KOALA-Lightning recipe: the teacher is the step-distilled
# toy teacher (diffkd-toy/sdxl-teacher-lcm, the toy's SDXL-Lightning: the
# toy SDXL teacher consistency-distilled by configs/toy/
# sdxl_lcm_teacher_toy.py; build it first with
# python tools/build_toy_world.py --only sdxl-teacher-lcm), run in bf16; the
# KOALA-700M student starts from it through the module map, keeps the toy
# teacher pipeline's text encoders, VAE and trailing Euler scheduler, and
# samples in few steps without CFG, as the real recipe does.
_base_ = './koala_700m_distill_toy.py'
step_distilled_teacher = 'diffkd-toy/sdxl-teacher-lcm'
model = dict(
    teacher=dict(model=step_distilled_teacher, dtype='bfloat16'))
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['a red circle on a blue background'],
        num_inference_steps=4,
        guidance_scale=1.0,
        upscale=4),
    dict(type='DiffusersExportHook'),
]
test_cfg = dict(sampling=dict(num_inference_steps=4, guidance_scale=1.0))
