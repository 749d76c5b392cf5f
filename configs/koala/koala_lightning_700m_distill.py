# KOALA-Lightning-700M: the teacher is the step-distilled SDXL-Lightning
# UNet (its own weights, SDXL's text encoders and VAE); sample the result
# with EulerDiscreteScheduler(timestep_spacing='trailing') and ~10 steps.
_base_ = './koala_700m_distill_from_sdxl.py'
# ByteDance/SDXL-Lightning ships bare UNet state dicts; save one as a
# diffusers folder first (load SDXL-base's UNet, load_state_dict the
# 8-step file, save_pretrained) and point `teacher.model` at it.
model = dict(
    teacher=dict(model='checkpoints/sdxl-lightning-8step', subfolder=None,
                 dtype='bfloat16'))
# The student is initialised from the Lightning teacher through the
# KOALA-700M module map (same architecture as SDXL-base).
custom_hooks = [
    dict(
        type='VisualizationHook',
        prompts=['a portrait painting of a golden retriever'],
        num_inference_steps=10,
        guidance_scale=3.5,
        interval=5000),
    dict(type='DiffusersExportHook', interval=5000),
]
