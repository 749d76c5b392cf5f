"""Published UNet configs of the real teachers (architecture facts only).

Shipped so that recipes, parameter counts and toy topologies work without a
model hub. Keys: ``sd15`` (SD-1.4/1.5), ``sd21`` (SD-2.1), ``sdxl_base``.
"""
import json
import os.path as osp
from typing import Dict, List

_HERE = osp.dirname(osp.abspath(__file__))


def available_teacher_configs() -> List[str]:
    import glob
    return sorted(
        osp.splitext(osp.basename(p))[0]
        for p in glob.glob(osp.join(_HERE, '*.json')))


def load_teacher_config(name: str) -> Dict:
    path = osp.join(_HERE, f'{name}.json')
    if not osp.isfile(path):
        raise KeyError(f'no shipped teacher UNet config {name!r}; shipped: '
                       f'{available_teacher_configs()}')
    with open(path) as f:
        return json.load(f)
