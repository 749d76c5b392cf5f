"""Optimizers from optional libraries, registered by name and imported
only when a config builds one (importing diffkd never imports them).

``optim_wrapper.optimizer=dict(type='AdamW8bit', lr=...)``: bitsandbytes'
8-bit AdamW. Its two moment buffers are stored as one byte per element
(blockwise quantised), not four: for a 1.3B-parameter student 10.6 GB of
fp32 AdamW state become 2.7 GB. Parameters with fewer than
``min_8bit_size`` elements (biases, norms) keep fp32 state, as
bitsandbytes decides.
"""
from typing import Tuple

from diffkd.registry import OPTIMIZERS

BNB_HINT = 'pip install bitsandbytes (or pip install "diffkd[memory]")'


def import_bitsandbytes():
    try:
        import bitsandbytes
    except ImportError as err:
        raise ImportError(
            f"optim_wrapper.optimizer type 'AdamW8bit' needs bitsandbytes: "
            f'{BNB_HINT}') from err
    return bitsandbytes


@OPTIMIZERS.register_module()
def AdamW8bit(params,
              lr: float = 1e-3,
              betas: Tuple[float, float] = (0.9, 0.999),
              eps: float = 1e-8,
              weight_decay: float = 1e-2,
              min_8bit_size: int = 4096,
              fused=None,
              foreach=None,
              **kwargs):
    """bitsandbytes' ``AdamW8bit`` (its other arguments pass through).

    ``fused`` and ``foreach`` are torch AdamW's switches, which the toy and
    SDXL schedules set; they are accepted so that changing only the type
    switches the optimizer, and ignored: bitsandbytes runs one kernel of
    its own per parameter.
    """
    bnb = import_bitsandbytes()
    return bnb.optim.AdamW8bit(
        params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
        min_8bit_size=min_8bit_size, **kwargs)
