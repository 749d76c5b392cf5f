"""LoRA in the kohya / A1111 format, beside diffusers' file.

diffusers' ``convert_state_dict_to_kohya`` does the renaming (peft ->
``lora_unet_<module>.lora_down/lora_up.weight``, DoRA magnitudes ->
``dora_scale``); it writes each module's ``alpha`` as the rank, so the
adapter's real ``lora_alpha`` is put back here (kohya loaders scale by
``alpha / rank``). A1111, ComfyUI and diffusers' ``load_lora_weights``
read the file. DoRA adapters (``use_dora``) are kept in diffusers'
file only: see :func:`to_kohya`.
"""
from typing import Dict

import torch

KOHYA_WEIGHT_NAME = 'lora_kohya.safetensors'
# diffusers' kohya prefixes per pipeline component
_PREFIX = {'unet': 'lora_unet', 'text_encoder': 'lora_te1',
           'text_encoder_2': 'lora_te2'}


def to_kohya(layers: Dict[str, Dict[str, torch.Tensor]],
             alphas: Dict[str, float]) -> Dict[str, torch.Tensor]:
    """``layers``: component -> peft state dict (``<module>.lora_A.weight``
    ...); ``alphas``: component -> ``lora_alpha``."""
    from diffusers.utils import convert_state_dict_to_kohya
    dora = [f'{c}.{k}' for c, st in layers.items() for k in st
            if 'lora_magnitude_vector' in k]
    if dora:
        raise ValueError(
            f'{dora[0]}: a DoRA adapter has no faithful kohya form (kohya/'
            'LyCORIS dora_scale normalises along another axis than peft, '
            'and diffusers\' kohya loader does not restore it); use the '
            'diffusers file')
    out = {}
    for component, state in layers.items():
        kohya = convert_state_dict_to_kohya(
            {f'{component}.{k}': v for k, v in state.items()})
        for key, value in kohya.items():
            if key.endswith('.alpha'):
                value = torch.tensor(float(alphas[component]))
            out[key] = value
    return out


def save_kohya_lora(path: str, layers: Dict[str, Dict[str, torch.Tensor]],
                    alphas: Dict[str, float]) -> str:
    from safetensors.torch import save_file
    state = {k: v.detach().contiguous().cpu()
             for k, v in to_kohya(layers, alphas).items()}
    save_file(state, path, metadata={'format': 'pt', 'ss_network_module':
                                     'networks.lora'})
    return path
