from .block_removal import (BlockRemoval, Compression,
                            IncompatibleTeacherError)
from .recipes import (KOALA1B, KOALA700M, SSD1B, BKSDMBase, BKSDMSmall,
                      BKSDMTiny, SegmindSmall, SegmindTiny, SegmindVega)
from .student import build_compression, count_parameters, init_from_teacher

__all__ = [
    'BlockRemoval', 'Compression', 'IncompatibleTeacherError', 'BKSDMBase',
    'BKSDMSmall', 'BKSDMTiny', 'SegmindSmall', 'SegmindTiny', 'SSD1B',
    'SegmindVega', 'KOALA1B', 'KOALA700M', 'build_compression',
    'count_parameters', 'init_from_teacher'
]
