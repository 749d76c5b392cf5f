"""Published UNet configs of the real teachers (architecture facts only).

Shipped so that recipes, parameter counts and toy topologies work without a
model hub (:func:`diffkd.apis.unet_config_for` reads a UNet config from
any name, falling back to these). Keys: ``sd15`` (SD-1.4/1.5 and fine-tunes
such as Realistic Vision), ``sd21`` (SD-2.1 at 768 px; SD-2.1-base has the
same layers and parameters, but its config has ``sample_size`` 64 and no
``upcast_attention``), ``sdxl_base`` (SDXL-base-1.0 and SDXL-Lightning).
"""
import json
import os.path as osp
from typing import Dict, List

_HERE = osp.dirname(osp.abspath(__file__))

# Hub ids whose UNet has one of the shipped architectures.
KNOWN_TEACHERS = {
    'CompVis/stable-diffusion-v1-4': 'sd15',
    'runwayml/stable-diffusion-v1-5': 'sd15',
    'stable-diffusion-v1-5/stable-diffusion-v1-5': 'sd15',
    'SG161222/Realistic_Vision_V4.0': 'sd15',
    'stabilityai/stable-diffusion-2-1': 'sd21',
    'stabilityai/stable-diffusion-2-1-base': 'sd21',
    'stabilityai/stable-diffusion-xl-base-1.0': 'sdxl_base',
    'ByteDance/SDXL-Lightning': 'sdxl_base',
    'checkpoints/sdxl-lightning-8step': 'sdxl_base',
}


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
