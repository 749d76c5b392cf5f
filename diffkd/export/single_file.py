"""A pipeline folder as one ``.safetensors`` file in the original LDM/SGM
key layout (what A1111, ComfyUI and ``from_single_file`` read).

The mapping is diffusers' own, run backwards:

* the fixed keys come from diffusers' ``DIFFUSERS_TO_LDM_MAPPING``;
* the leaf names inside a resnet or VAE attention block are found by
  running diffusers' own ``update_*_ldm_to_diffusers`` renamers on the
  original modules' names (key-tagged, see :func:`_leaf_map`);
* block positions follow the index arithmetic of
  ``convert_ldm_unet_checkpoint`` / ``convert_ldm_vae_checkpoint``.

Every file is then checked by converting it forward again with diffusers'
converters: each tensor must come back under its diffusers name, equal.
A layout the converters cannot express (e.g. a UNet with a different
number of layers per stage) stops with the key that does not map.
"""
import json
import os
import os.path as osp
import re
from typing import Dict, List, Optional

import torch

UNET_PREFIX = 'model.diffusion_model.'
VAE_PREFIX = 'first_stage_model.'
SD_CLIP_PREFIX = 'cond_stage_model.transformer.'
SDXL_CLIP_PREFIX = 'conditioner.embedders.0.transformer.'
SDXL_OPEN_CLIP_PREFIX = 'conditioner.embedders.1.model.'

# Module names inside the original blocks (ldm/sgm openaimodel ResBlock,
# VAE ResnetBlock and AttnBlock); their diffusers names come from diffusers.
_LDM_UNET_RESNET_LEAVES = ('in_layers.0', 'in_layers.2', 'emb_layers.1',
                           'out_layers.0', 'out_layers.3', 'skip_connection')
_LDM_VAE_RESNET_LEAVES = ('norm1', 'conv1', 'norm2', 'conv2', 'nin_shortcut')
_LDM_VAE_ATTN_LEAVES = ('norm', 'q', 'k', 'v', 'proj_out')


class SingleFileError(ValueError):
    """A state dict that the original layout cannot hold."""


def _leaf_map(renamer, leaves, old, new, **kw) -> Dict[str, str]:
    """diffusers leaf name -> original leaf name, read off diffusers'
    renamer applied to ``<old>.<leaf>.weight`` tagged keys."""
    from diffusers.loaders import single_file_utils as sfu
    fn = getattr(sfu, renamer)
    keys = [f'{old}.{leaf}.weight' for leaf in leaves]
    out = {}
    fn(keys, out, {k: torch.zeros(1, 1, 1, 1) for k in keys},
       {'old': old, 'new': new}, **kw)
    if len(out) != len(keys):
        raise SingleFileError(f'diffusers\' {renamer} merged original '
                              f'names {leaves}')
    result = {}
    for leaf, mine in zip(leaves, out):  # out keeps the order of keys
        result[mine[len(new) + 1:-len('.weight')]] = leaf
    return result


def _leaf(name: str, table: Dict[str, str], where: str) -> str:
    for diff, ldm in table.items():
        if name == diff or name.startswith(diff + '.'):
            return ldm + name[len(diff):]
    raise SingleFileError(f'{where}.{name}: no original name for this '
                          f'layer (known: {", ".join(table)})')


# ------------------------------------------------------------------ UNet
def unet_to_ldm(state: Dict[str, torch.Tensor],
                config: Dict) -> Dict[str, torch.Tensor]:
    """A diffusers UNet state dict in the original layout (no prefix)."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING
    lpb = config['layers_per_block']
    if not isinstance(lpb, int):
        if len(set(lpb)) != 1:
            raise SingleFileError(
                f'layers_per_block={lpb}: the original UNet layout (and '
                'diffusers\' converter) needs the same number of layers in '
                'every down stage')
        lpb = lpb[0]
    table = dict(DIFFUSERS_TO_LDM_MAPPING['unet']['layers'])
    if config.get('addition_embed_type') == 'text_time':
        table.update(DIFFUSERS_TO_LDM_MAPPING['unet']['addition_embed_type'])
    if config.get('class_embed_type') in ('timestep', 'projection'):
        table.update(DIFFUSERS_TO_LDM_MAPPING['unet']['class_embed_type'])
    resnet = _leaf_map('update_unet_resnet_ldm_to_diffusers',
                       _LDM_UNET_RESNET_LEAVES, 'LDM', 'DIFF')
    up_has_attn = {int(m.group(1)) for k in state
                   for m in [re.match(r'up_blocks\.(\d+)\.attentions\.', k)]
                   if m}
    out = {}
    for key, value in state.items():
        if key in table:
            out[table[key]] = value
            continue
        m = re.match(r'(down|up)_blocks\.(\d+)\.(resnets|attentions)\.'
                     r'(\d+)\.(.+)', key)
        if m:
            side, b, kind, j, rest = m.groups()
            b, j = int(b), int(j)
            if side == 'down':
                block = f'input_blocks.{1 + b * (lpb + 1) + j}'
            else:
                block = f'output_blocks.{b * (lpb + 1) + j}'
            if kind == 'resnets':
                out[f'{block}.0.{_leaf(rest, resnet, key)}'] = value
            else:
                out[f'{block}.1.{rest}'] = value
            continue
        m = re.match(r'(down|up)_blocks\.(\d+)\.(down|up)samplers\.0\.conv\.'
                     r'(weight|bias)$', key)
        if m:
            side, b, _, p = m.groups()
            b = int(b)
            if side == 'down':
                out[f'input_blocks.{1 + b * (lpb + 1) + lpb}.0.op.{p}'] = \
                    value
            else:
                sub = 2 if b in up_has_attn else 1
                out[f'output_blocks.{b * (lpb + 1) + lpb}.{sub}.conv.{p}'] = \
                    value
            continue
        m = re.match(r'mid_block\.(resnets|attentions)\.(\d+)\.(.+)', key)
        if m:
            kind, j, rest = m.groups()
            j = int(j)
            if kind == 'resnets':
                out[f'middle_block.{2 * j}.{_leaf(rest, resnet, key)}'] = \
                    value
            else:
                out[f'middle_block.{2 * j + 1}.{rest}'] = value
            continue
        raise SingleFileError(f'UNet key {key}: no place for it in the '
                              'original layout')
    return out


# ------------------------------------------------------------------- VAE
def vae_to_ldm(state: Dict[str, torch.Tensor],
               config: Dict) -> Dict[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING
    table = DIFFUSERS_TO_LDM_MAPPING['vae']
    resnet = _leaf_map('update_vae_resnet_ldm_to_diffusers',
                       _LDM_VAE_RESNET_LEAVES, 'LDM', 'DIFF')
    attn = _leaf_map('update_vae_attentions_ldm_to_diffusers',
                     _LDM_VAE_ATTN_LEAVES, 'LDM', 'DIFF')
    n_up = len(config['up_block_types'])
    out = {}
    for key, value in state.items():
        if key in table:
            out[table[key]] = value
            continue
        m = re.match(r'(encoder|decoder)\.(down|up)_blocks\.(\d+)\.'
                     r'(resnets\.(\d+)|downsamplers\.0|upsamplers\.0)\.(.+)',
                     key)
        if m:
            part, side, i, what, j, rest = m.groups()
            i = int(i) if side == 'down' else n_up - 1 - int(i)
            if what.startswith('resnets'):
                out[f'{part}.{side}.{i}.block.{j}.'
                    f'{_leaf(rest, resnet, key)}'] = value
            else:
                out[f'{part}.{side}.{i}.{side}sample.{rest}'] = value
            continue
        m = re.match(r'(encoder|decoder)\.mid_block\.(resnets|attentions)\.'
                     r'(\d+)\.(.+)', key)
        if m:
            part, kind, j, rest = m.groups()
            if kind == 'resnets':
                out[f'{part}.mid.block_{int(j) + 1}.'
                    f'{_leaf(rest, resnet, key)}'] = value
            else:
                # The original attention projections are 1x1 convolutions.
                if value.ndim == 2:
                    value = value[:, :, None, None]
                out[f'{part}.mid.attn_1.{_leaf(rest, attn, key)}'] = value
            continue
        raise SingleFileError(f'VAE key {key}: no place for it in the '
                              'original layout')
    return out


# --------------------------------------------------------- text encoders
def clip_to_ldm(state: Dict[str, torch.Tensor],
                prefix: str) -> Dict[str, torch.Tensor]:
    """transformers' CLIPTextModel under ``prefix`` (the original keeps
    the ``text_model.`` level, which newer transformers flatten)."""
    out = {}
    for key, value in state.items():
        if not key.startswith('text_model.'):
            key = 'text_model.' + key
        out[prefix + key] = value
    return out


def open_clip_to_ldm(state: Dict[str, torch.Tensor],
                     prefix: str = SDXL_OPEN_CLIP_PREFIX
                     ) -> Dict[str, torch.Tensor]:
    """transformers' CLIPTextModelWithProjection in OpenCLIP's layout
    (SDXL's second text encoder): q/k/v stacked into ``in_proj``, the
    projection transposed, names from diffusers' openclip table."""
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING
    layers = DIFFUSERS_TO_LDM_MAPPING['openclip']['layers']
    renames = [(d, o) for d, o in
               DIFFUSERS_TO_LDM_MAPPING['openclip']['transformer'].items()
               if not d.startswith('transformer.')]
    out, qkv = {}, {}
    for key, value in state.items():
        if key in layers:
            out[prefix + layers[key]] = value.T.contiguous() \
                if key == 'text_projection.weight' else value
            continue
        if not key.startswith('text_model.encoder.layers.'):
            raise SingleFileError(f'text_encoder_2 key {key}: no place for '
                                  'it in the OpenCLIP layout')
        m = re.match(r'(.+)\.self_attn\.([qkv])_proj\.(weight|bias)$', key)
        if m:
            qkv.setdefault((m.group(1), m.group(3)), {})[m.group(2)] = value
            continue
        name = key
        for diff, orig in renames:
            name = name.replace(diff, orig)
        out[prefix + 'transformer.' + name] = value
    for (layer, kind), parts in qkv.items():
        name = layer
        for diff, orig in renames:
            name = name.replace(diff, orig)
        out[f'{prefix}transformer.{name}.attn.in_proj_{kind}'] = torch.cat(
            [parts['q'], parts['k'], parts['v']])
    return out


# ----------------------------------------------------------- whole file
def _load(folder: str, name: str):
    from safetensors.torch import load_file
    sub = osp.join(folder, name)
    files = sorted(f for f in os.listdir(sub)
                   if f.endswith('.safetensors'))
    if not files:
        raise FileNotFoundError(f'{sub} has no .safetensors weights')
    # Hub folders may hold an fp16 variant beside the full weights.
    plain = [f for f in files if not re.search(r'\.(fp16|bf16)\.', f)]
    files = plain or files
    state = {}
    for f in files:  # one file, or the shards of a large component
        state.update(load_file(osp.join(sub, f)))
    with open(osp.join(sub, 'config.json')) as f:
        return state, json.load(f)


def pipeline_to_single_file(folder: str,
                            dtype: Optional[torch.dtype] = None
                            ) -> Dict[str, torch.Tensor]:
    """The original-layout state dict of a diffusers SD/SDXL folder:
    UNet, VAE and the text encoder(s) of its family."""
    with open(osp.join(folder, 'model_index.json')) as f:
        index = json.load(f)
    xl = 'text_encoder_2' in index and index['text_encoder_2'][0]
    unet, unet_cfg = _load(folder, 'unet')
    vae, vae_cfg = _load(folder, 'vae')
    te, _ = _load(folder, 'text_encoder')
    out = {UNET_PREFIX + k: v for k, v in unet_to_ldm(unet, unet_cfg).items()}
    out.update({VAE_PREFIX + k: v
                for k, v in vae_to_ldm(vae, vae_cfg).items()})
    if xl:
        out.update(clip_to_ldm(te, SDXL_CLIP_PREFIX))
        te2, _ = _load(folder, 'text_encoder_2')
        out.update(open_clip_to_ldm(te2))
    else:
        out.update(clip_to_ldm(te, SD_CLIP_PREFIX))
    check_round_trip(out, folder)
    if dtype is not None:
        out = {k: v.to(dtype) for k, v in out.items()}
    return {k: v.contiguous() for k, v in out.items()}


def _compare(mine: Dict, back: Dict, what: str) -> List[str]:
    problems = [f'{what} {k}: lost' for k in sorted(set(mine) - set(back))]
    problems += [f'{what} {k}: unexpected' for k in
                 sorted(set(back) - set(mine))]
    problems += [f'{what} {k}: changed' for k in sorted(set(mine) & set(back))
                 if back[k] is None or not torch.equal(
                     mine[k], back[k].reshape(mine[k].shape))]
    return problems


def check_round_trip(ldm: Dict[str, torch.Tensor], folder: str) -> None:
    """Convert ``ldm`` back with diffusers' own converters; every tensor of
    ``folder`` must come back under its name, equal."""
    from diffusers.loaders import single_file_utils as sfu
    unet, unet_cfg = _load(folder, 'unet')
    vae, vae_cfg = _load(folder, 'vae')
    problems = _compare(unet, sfu.convert_ldm_unet_checkpoint(ldm, unet_cfg),
                        'unet')
    problems += _compare(vae, sfu.convert_ldm_vae_checkpoint(
        {k: v for k, v in ldm.items() if k.startswith(VAE_PREFIX)},
        vae_cfg), 'vae')
    te, _ = _load(folder, 'text_encoder')
    back = sfu.convert_ldm_clip_checkpoint(ldm)
    problems += _compare(clip_to_ldm(te, ''), back, 'text_encoder')
    if osp.isdir(osp.join(folder, 'text_encoder_2')):
        te2, te2_cfg = _load(folder, 'text_encoder_2')

        class _Cfg:  # what convert_open_clip_checkpoint reads of the model
            config = type('C', (), {'hidden_size': te2_cfg['hidden_size']})
        back = sfu.convert_open_clip_checkpoint(
            _Cfg, ldm, prefix=SDXL_OPEN_CLIP_PREFIX)
        problems += _compare(te2, back, 'text_encoder_2')
    if problems:
        raise SingleFileError(
            f'{folder}: the single-file layout does not convert back with '
            f'diffusers\' converters: {"; ".join(problems[:10])}')
