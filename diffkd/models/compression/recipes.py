"""The published block-removal students as recipes.

Parameter counts each recipe reproduces on the real teacher config are
checked in tests/test_models/test_compression.py; sources and ambiguities are
in docs/model_zoo.md.
"""
from diffkd.registry import COMPRESSIONS
from .block_removal import BlockRemoval

# SD-1.x/2.x: 4 stages, 2 layers per down stage, 3 per up stage.
_SD_DOWN_ONE = [[0], [0], [0], [0]]
# BK-SDM keeps the first and last of the three up layers.
_SD_UP_TWO = [[0, 2], [0, 2], [0, 2], [0, 2]]


@COMPRESSIONS.register_module()
class BKSDMBase(BlockRemoval):
    """BK-SDM-Base: one resnet+attention per down stage, two of three per
    up stage; mid block kept (SD-1.4: 579.4M UNet params)."""

    def __init__(self):
        super().__init__(down_layers=_SD_DOWN_ONE, up_layers=_SD_UP_TWO,
                         mid='keep', teacher_stages=4)


@COMPRESSIONS.register_module()
class BKSDMSmall(BlockRemoval):
    """BK-SDM-Small: Base without the mid block (482.3M).

    ``mid='resnet'`` keeps a light mid block (one resnet, as SSD-1B), which
    ``ControlNetModel.from_unet`` needs (see docs/export.md)."""

    def __init__(self, mid: str = 'remove'):
        super().__init__(down_layers=_SD_DOWN_ONE, up_layers=_SD_UP_TWO,
                         mid=mid, teacher_stages=4)


@COMPRESSIONS.register_module()
class BKSDMTiny(BlockRemoval):
    """BK-SDM-Tiny: Small without the innermost stage (323.4M);
    ``mid='resnet'`` as for :class:`BKSDMSmall`."""

    def __init__(self, mid: str = 'remove'):
        super().__init__(down_stages=[0, 1, 2], down_layers=[[0]] * 3,
                         up_layers=[[0, 2]] * 3, mid=mid,
                         teacher_stages=4)


@COMPRESSIONS.register_module()
class SegmindSmall(BKSDMBase):
    """Segmind small-sd (distill-sd ``sd_small``): the BK-SDM-Base layout;
    its code deletes the same layers and keeps the mid block."""


@COMPRESSIONS.register_module()
class SegmindTiny(BKSDMTiny):
    """Segmind tiny-sd (distill-sd ``sd_tiny``): the BK-SDM-Tiny layout."""


# SDXL: 3 stages with transformer depths [0, 2, 10].
_SDXL = dict(teacher_stages=3, teacher_depths=[0, 2, 10])


@COMPRESSIONS.register_module()
class SSD1B(BlockRemoval):
    """Segmind SSD-1B: every resnet and Transformer2D kept, transformer
    depth cut (down [1, 2, 4], up [[4, 4, 10], [2, 1, 1], 1]) and the mid
    block reduced to one resnet (1,331,334,404 params, '1.3B')."""

    def __init__(self):
        super().__init__(
            mid='resnet', down_depths=[1, 2, 4],
            up_depths=[[4, 4, 10], [2, 1, 1], [1, 1, 1]], **_SDXL)


@COMPRESSIONS.register_module()
class SegmindVega(BlockRemoval):
    """Segmind-Vega: depths [1, 1, 2] down and mirrored up, mid block one
    resnet (745,225,604 params, '0.74B')."""

    def __init__(self):
        super().__init__(
            mid='resnet', down_depths=[1, 1, 2],
            up_depths=[[2, 2, 2], [1, 1, 1], [1, 1, 1]], **_SDXL)


@COMPRESSIONS.register_module()
class KOALA1B(BlockRemoval):
    """KOALA-1B: one layer per down stage, two per up stage, depths
    [0, 2, 6], mid block kept at depth 6 (1,161M)."""

    def __init__(self):
        super().__init__(
            down_layers=[[0]] * 3, up_layers=[[0, 2]] * 3, mid='keep',
            down_depths=[1, 2, 6], up_depths=[[6, 6], [2, 2], [1, 1]],
            **_SDXL)


@COMPRESSIONS.register_module()
class KOALA700M(BlockRemoval):
    """KOALA-700M: KOALA-1B's layout at depth 5 without the mid block
    (782M); ``mid='resnet'`` as for :class:`BKSDMSmall`."""

    def __init__(self, mid: str = 'remove'):
        super().__init__(
            down_layers=[[0]] * 3, up_layers=[[0, 2]] * 3, mid=mid,
            down_depths=[1, 2, 5], up_depths=[[5, 5], [2, 2], [1, 1]],
            **_SDXL)


# A user-defined student is just the generic recipe in a config:
# compression=dict(type='BlockRemoval', down_layers=..., mid='remove', ...)
COMPRESSIONS.register_module(module=BlockRemoval)
