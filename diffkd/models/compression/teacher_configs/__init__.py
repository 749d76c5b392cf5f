"""Published UNet configs of the real teachers (architecture facts only).

Shipped so that recipes, parameter counts and toy topologies work without a
model hub. Keys: ``sd15`` (SD-1.4/1.5 and fine-tunes such as Realistic
Vision), ``sd21`` (SD-2.1 at 768 px; SD-2.1-base has the same layers and
parameters, but its config has ``sample_size`` 64 and no
``upcast_attention``), ``sdxl_base`` (SDXL-base-1.0 and SDXL-Lightning).
"""
import json
import os.path as osp
from typing import Dict, List, Optional

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


def unet_config_for(name_or_path: str, subfolder: Optional[str] = 'unet'):
    """A UNet config from a local folder or the hub cache, falling back to
    the shipped copy for known hub ids (no download needed)."""
    from diffusers import UNet2DConditionModel

    from diffkd.utils.hub import TOY_PREFIX, resolve_model_path
    if name_or_path.startswith(TOY_PREFIX):
        # The toy topology is known without building (or training) it.
        from diffkd.toy.pipelines import toy_unet_config
        kind = name_or_path[len(TOY_PREFIX):].split('-')[0]
        return toy_unet_config(kind), f'toy:{kind}'
    path = resolve_model_path(name_or_path)
    try:
        kw = dict(subfolder=subfolder) if subfolder else {}
        return dict(UNet2DConditionModel.load_config(path, **kw)), path
    except (OSError, ValueError) as err:
        if name_or_path in KNOWN_TEACHERS:
            key = KNOWN_TEACHERS[name_or_path]
            return load_teacher_config(key), f'shipped:{key}'
        raise FileNotFoundError(
            f'cannot read the UNet config of {name_or_path!r} ({err}); '
            f'known offline: {sorted(KNOWN_TEACHERS)}') from err
