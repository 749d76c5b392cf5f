from . import losses  # noqa: F401
from .compression import *  # noqa: F401,F403
from .diffusion import *  # noqa: F401,F403
from .distill import *  # noqa: F401,F403
