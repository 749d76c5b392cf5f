# Toy twin of the KOALA-Lightning recipe: the teacher differs from the
# student's base pipeline (here: the trained toy teacher's UNet in bf16 while
# the student starts from it and keeps its text encoders and VAE), and
# samples use trailing timestep spacing with few steps.
_base_ = './koala_700m_distill_toy.py'
model = dict(teacher=dict(dtype='bfloat16'))
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['a red circle on a blue background'],
        num_inference_steps=10,
        guidance_scale=4.0,
        upscale=4),
    dict(type='DiffusersExportHook'),
]
