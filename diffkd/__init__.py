"""diffkd: distil, personalise and fine-tune Stable Diffusion family models
with an OpenMMLab-style engine."""
__version__ = '0.1.0'

from . import engine  # noqa: F401,E402  (registers the safe resume loader)
