"""diffkd: distil, personalise and fine-tune Stable Diffusion family models
with an OpenMMLab-style engine."""
__version__ = '0.1.0'
