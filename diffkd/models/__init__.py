from . import losses  # noqa: F401
from .diffusion import *  # noqa: F401,F403
