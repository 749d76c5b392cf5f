"""The UNet config behind a model name, without loading (or building) it."""
from typing import Dict, Optional, Tuple

from diffkd.models.compression.teacher_configs import (KNOWN_TEACHERS,
                                                       load_teacher_config)
from diffkd.utils.hub import TOY_PREFIX, resolve_model_path


def unet_config_for(name_or_path: str,
                    subfolder: Optional[str] = 'unet') -> Tuple[Dict, str]:
    """A UNet config from a local folder or the hub cache, falling back to
    the shipped copy for known hub ids (no download needed); a toy id's
    topology is known without building the toy world.

    Returns ``(config, where it came from)``.
    """
    from diffusers import UNet2DConditionModel
    if name_or_path.startswith(TOY_PREFIX):
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
