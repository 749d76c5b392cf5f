"""Inference cost of teacher vs student UNets
(``tools/analysis_tools/benchmark_infer.py``; docs/performance.md).

Per UNet: parameters, checkpoint size in the chosen dtype, latency of N
denoising steps (one UNet forward on the classifier-free-guidance batch 2*B
per step, what a pipeline step costs), peak memory, and each student's
speed-up and parameter ratio against its teacher.

Models come from diffkd configs (a distillation config gives its teacher and
the student its compression recipe makes; a diffusion config its UNet) or
from architecture names (:data:`ARCHS`, :data:`PRESETS`: real architectures
from the shipped teacher configs and the compression recipes). UNets whose
weights are on disk are loaded; the others get random weights (nothing is
downloaded): latency does not depend on weight values. UNets are built and
measured one at a time.
"""
import difflib
import json
import os
import os.path as osp
import platform
import re
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from diffusers import UNet2DConditionModel
from mmengine.config import Config

from diffkd.apis.unet_config import unet_config_for
from diffkd.models.compression import build_compression, count_parameters
from diffkd.models.compression.teacher_configs import load_teacher_config
from diffkd.models.diffusion.random_init import random_unet_config
from diffkd.utils.hub import ToyAssetNotBuiltError, resolve_model_path
from diffkd.utils.profiling import PeakMemory, release_freed_memory

TEXT_LEN = 77
GUIDANCE = 7.5
DTYPES = dict(float32=torch.float32, bfloat16=torch.bfloat16,
              float16=torch.float16)

# name -> (shipped teacher config, compression recipe or None for the teacher)
ARCHS = {
    'sd15_teacher': ('sd15', None),
    'bk_sdm_base': ('sd15', 'BKSDMBase'),
    'bk_sdm_small': ('sd15', 'BKSDMSmall'),
    'bk_sdm_tiny': ('sd15', 'BKSDMTiny'),
    'segmind_small': ('sd15', 'SegmindSmall'),
    'segmind_tiny': ('sd15', 'SegmindTiny'),
    'sdxl_teacher': ('sdxl_base', None),
    'ssd_1b': ('sdxl_base', 'SSD1B'),
    'segmind_vega': ('sdxl_base', 'SegmindVega'),
    'koala_1b': ('sdxl_base', 'KOALA1B'),
    'koala_700m': ('sdxl_base', 'KOALA700M'),
}
PRESETS = {
    'sdxl': ['sdxl_teacher', 'ssd_1b', 'segmind_vega', 'koala_1b',
             'koala_700m'],
    'sd15': ['sd15_teacher', 'bk_sdm_base', 'bk_sdm_small', 'bk_sdm_tiny'],
}
_TEACHER_ARCH = {key: a for a, (key, recipe) in ARCHS.items() if not recipe}
_WEIGHTS = re.compile(r'diffusion_pytorch_model(?:\.(\w+))?'
                      r'(?:-\d+-of-\d+)?\.(safetensors|bin)$')


def _stderr(msg: str):
    print(msg, file=sys.stderr, flush=True)


class BenchmarkError(ValueError):
    """A request the tool cannot serve (bad name, config or weights)."""


@dataclass
class Spec:
    """One UNet to measure: architecture, weights and comparison partner."""
    name: str
    role: str  # teacher | student | model (a diffusion config's UNet)
    config: Dict
    source: str
    weights: Optional[str] = None  # UNet folder or state-dict file
    teacher: Optional['Spec'] = None
    vae_scale: int = 8


# ------------------------------------------------------------- model specs
def _clean(config: Dict) -> Dict:
    return {k: v for k, v in config.items() if not k.startswith('_')}


def _weight_files(folder: str) -> Tuple[List[str], Optional[str]]:
    """The UNet weight files from_pretrained would load, and their variant
    (plain files first, safetensors before bin)."""
    if not osp.isdir(folder):
        return [], None
    found = {}
    for f in sorted(os.listdir(folder)):
        m = _WEIGHTS.match(f)
        if m:
            found.setdefault((m.group(1) is not None, m.group(2) == 'bin',
                              m.group(1)), []).append(osp.join(folder, f))
    if not found:
        return [], None
    key = min(found, key=lambda k: k[:2])
    return found[key], key[2]


def _on_disk(source: str, subfolder: Optional[str]) -> Optional[str]:
    """The UNet folder of ``source`` if its weights are on disk (a local
    folder, a built toy asset or the hub cache), else None."""
    try:
        path = resolve_model_path(source)
    except ToyAssetNotBuiltError:
        return None  # its config is known without building it
    if not osp.isdir(path):
        try:
            from huggingface_hub import try_to_load_from_cache
            cfg = try_to_load_from_cache(
                source, '/'.join(filter(None, [subfolder, 'config.json'])))
        except ValueError:  # not a hub id
            return None
        if not isinstance(cfg, str):
            return None
        folder = osp.dirname(cfg)
    else:
        folder = osp.join(path, subfolder) if subfolder else path
    return folder if _weight_files(folder)[0] else None


def _vae_scale(unet_folder: Optional[str]) -> Optional[int]:
    """Pixel-to-latent factor from the pipeline's VAE config next to the
    UNet folder, if there is one (8 for every real Stable Diffusion VAE)."""
    if unet_folder:
        vae = osp.join(osp.dirname(osp.abspath(unet_folder)), 'vae',
                       'config.json')
        if osp.isfile(vae):
            with open(vae) as f:
                return 2**(len(json.load(f)['block_out_channels']) - 1)
    return None


def _unet_spec(name: str, role: str, source: str,
               subfolder: Optional[str]) -> Spec:
    folder = _on_disk(source, subfolder)
    if folder:
        config = dict(UNet2DConditionModel.load_config(folder))
        return Spec(name, role, config, folder, folder,
                    vae_scale=_vae_scale(folder) or 8)
    config, where = unet_config_for(source, subfolder)
    return Spec(name, role, config, where)


def specs_from_config(path: str, options: Optional[Dict] = None
                      ) -> List[Spec]:
    cfg = Config.fromfile(path)
    if options:
        cfg.merge_from_dict(options)
    model = cfg.get('model') or {}
    stem = osp.splitext(osp.basename(path))[0]
    if model.get('type') == 'DiffusionDistiller':
        t_src = model.teacher['model']
        teacher = _unet_spec(t_src, 'teacher', t_src,
                             model.teacher.get('subfolder', 'unet'))
        comp = model.get('compression')
        s_cfg = (build_compression(comp)(teacher.config).student_config
                 if comp else _clean(teacher.config))
        kind = comp['type'] if comp else 'student'
        student = Spec(f'{stem}:{kind}', 'student', s_cfg,
                       f'{kind}({teacher.source})', teacher=teacher,
                       vae_scale=teacher.vae_scale)
        pre = model.get('student_pretrained')
        if model.get('student_init') == 'pretrained' and pre:
            found = _on_disk(pre['name_or_path'], pre.get('subfolder'))
            if found:
                student.config = dict(UNet2DConditionModel.load_config(found))
                student.source = student.weights = found
        return [teacher, student]
    if isinstance(model.get('model'), str):
        unet = model.get('unet')
        if isinstance(unet, str):
            src, sub = unet, None
        elif isinstance(unet, dict):
            src = unet.get('name_or_path', model['model'])
            sub = unet.get('subfolder')
        else:
            src, sub = model['model'], 'unet'
        return [_unet_spec(src, 'model', src, sub)]
    raise BenchmarkError(
        f'{path}: neither a distillation config (model.type='
        f"'DiffusionDistiller') nor a diffusion config (model=dict(type=..., "
        f"model='<pipeline>')); its model.type is {model.get('type')!r}")


def specs_from_archs(names: List[str],
                     width_divisor: int = 1) -> List[Spec]:
    """Specs of architecture names; ``width_divisor`` > 1 narrows every
    teacher's widths (``random_unet_config``: same topology) before its
    students' recipes apply."""
    valid = sorted(PRESETS) + sorted(ARCHS)
    teachers, out = {}, []
    for name in names:
        if name not in PRESETS and name not in ARCHS:
            close = difflib.get_close_matches(name, valid, n=3, cutoff=0.4)
            hint = f'did you mean {", ".join(close)}? ' if close else ''
            raise BenchmarkError(f'unknown --arch {name!r}; {hint}valid '
                                 f'names: {", ".join(valid)}')
        for arch in PRESETS.get(name, [name]):
            key, recipe = ARCHS[arch]
            if key not in teachers:
                teachers[key] = Spec(
                    _TEACHER_ARCH[key], 'teacher',
                    random_unet_config(key, width_divisor)
                    if width_divisor > 1 else load_teacher_config(key),
                    f'shipped:{key}' + (f' width/{width_divisor}'
                                        if width_divisor > 1 else ''))
            teacher = teachers[key]
            if recipe is None:
                spec = teacher
            else:
                spec = Spec(
                    arch, 'student',
                    build_compression(dict(type=recipe))(
                        teacher.config).student_config,
                    f'{recipe}({teacher.source})', teacher=teacher)
            out.append(spec)
    return out


def _weights_arg(path: str) -> Tuple[str, Optional[Dict]]:
    """A --*-weights path as (weights, config of a folder)."""
    if osp.isdir(path):
        sub = osp.join(path, 'unet')
        folder = sub if _weight_files(sub)[0] else path
        if not _weight_files(folder)[0]:
            raise BenchmarkError(f'{path} holds no diffusion_pytorch_model '
                                 'weights (nor does its unet/ folder)')
        return folder, dict(UNet2DConditionModel.load_config(folder))
    if not osp.isfile(path):
        raise BenchmarkError(f'weights {path} do not exist')
    return path, None


def apply_weights(specs: List[Spec], role: str, path: Optional[str]):
    if not path:
        return
    targets = [s for s in specs if s.role == role]
    if len(targets) != 1:
        raise BenchmarkError(
            f'--{role}-weights needs exactly one {role} to apply to, this '
            f'run has {len(targets)}: {[s.name for s in targets]}')
    spec = targets[0]
    spec.weights, config = _weights_arg(path)
    if config is not None:
        spec.config, spec.source = config, spec.weights
        spec.vae_scale = _vae_scale(spec.weights) or spec.vae_scale


def dedupe(specs: List[Spec]) -> List[Spec]:
    """Each distinct UNet once (configs and presets may share a teacher)."""
    def key(s):
        return (s.role, s.name, s.source, s.weights,
                json.dumps(s.config, sort_keys=True, default=str))

    unique = {}
    for s in specs:
        unique.setdefault(key(s), s)
    for s in unique.values():
        if s.teacher is not None:
            s.teacher = unique.get(key(s.teacher), s.teacher)
    return list(unique.values())


# ---------------------------------------------------------------- building
def _load_state_dict(path: str, keys, role: str) -> Dict[str, torch.Tensor]:
    """A UNet state dict from a file: a bare one or one nested in a training
    checkpoint (``state_dict`` key, ``student.unet.`` style prefixes; where
    there are several UNets, the one whose prefix names ``role``)."""
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        state = load_file(path)
    else:
        state = torch.load(path, map_location='cpu', weights_only=True)
        state = state.get('state_dict', state)
    probe = next(iter(keys))
    prefixes = sorted({k[:-len(probe)] for k in state
                       if k == probe or k.endswith('.' + probe)})
    if not prefixes:
        raise BenchmarkError(f'{path} holds no UNet weights ({probe!r} not '
                             'found)')
    if len(prefixes) > 1:
        prefixes = [p for p in prefixes if role in p] or prefixes
    if len(prefixes) > 1:
        raise BenchmarkError(f'{path} holds several UNets {prefixes}')
    p = prefixes[0]
    return {k[len(p):]: v for k, v in state.items() if k.startswith(p)}


@torch.no_grad()
def build_unet(spec: Spec, dtype: torch.dtype,
               device: torch.device) -> UNet2DConditionModel:
    if spec.weights and osp.isdir(spec.weights):
        files, variant = _weight_files(spec.weights)
        unet = UNet2DConditionModel.from_pretrained(
            spec.weights, torch_dtype=dtype, variant=variant,
            use_safetensors=files[0].endswith('.safetensors'))
        return unet.to(device).eval().requires_grad_(False)
    with torch.device('meta'):
        unet = UNet2DConditionModel.from_config(_clean(spec.config))
    # (nn.Module.to: diffusers' own warns about fp32-kept modules it has not)
    unet = torch.nn.Module.to(unet, dtype).to_empty(device=device)
    if spec.weights:
        unet.load_state_dict(
            _load_state_dict(spec.weights, unet.state_dict().keys(),
                             spec.role))
    else:
        # Cheap deterministic init (diffusers' own is minutes for SDXL on a
        # CPU): unit-gain uniform weights, unit norm scales, zero biases.
        gen = torch.Generator(device).manual_seed(0)
        for name, p in unet.named_parameters():
            if p.ndim > 1:
                bound = (3 / p[0].numel())**0.5
                p.uniform_(-bound, bound, generator=gen)
            elif name.endswith('weight'):
                p.fill_(1)
            else:
                p.zero_()
    return unet.eval().requires_grad_(False)


# --------------------------------------------------------------- measuring
def _inputs(config: Dict, batch: int, resolution: int, latent: int, dtype,
            device):
    gen = torch.Generator(device).manual_seed(0)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, device=device).to(dtype)

    n = 2 * batch  # classifier-free guidance: unconditional + conditional
    ctx = config['cross_attention_dim']
    ctx = ctx if isinstance(ctx, int) else ctx[0]
    kwargs = dict(encoder_hidden_states=randn(n, TEXT_LEN, ctx))
    if config.get('addition_embed_type') == 'text_time':
        text = (config['projection_class_embeddings_input_dim'] -
                6 * config['addition_time_embed_dim'])
        # original size, crop top-left, target size
        size = resolution
        time_ids = torch.tensor([size, size, 0, 0, size, size], dtype=dtype,
                                device=device)
        kwargs['added_cond_kwargs'] = dict(text_embeds=randn(n, text),
                                           time_ids=time_ids.repeat(n, 1))
    latents = randn(batch, config['in_channels'], latent, latent)
    return latents, kwargs


def _sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@torch.inference_mode()
def _denoise(unet, latents, kwargs, timesteps, device) -> float:
    """Seconds for one guided UNet call per timestep (plus the cheap guidance
    and update arithmetic a sampler adds)."""
    _sync(device)
    start = time.perf_counter()
    for t in timesteps:
        pred = unet(torch.cat([latents] * 2), t, **kwargs).sample
        uncond, cond = pred.chunk(2)
        latents = latents - 0.02 * (uncond + GUIDANCE * (cond - uncond))
    _sync(device)
    seconds = time.perf_counter() - start
    if not torch.isfinite(latents).all():
        raise RuntimeError('non-finite UNet output: the benchmark inputs or '
                           'weights are broken')
    return seconds


def measure(spec: Spec, dtype, device, resolution: Optional[int] = None,
            steps: int = 25, batch_size: int = 1,
            warmup: int = 1) -> Tuple[Dict, float]:
    """The row of one UNet, and its unrounded timed seconds (``resolution``
    None: the UNet's native one)."""
    resolution = (resolution
                  or spec.config['sample_size'] * spec.vae_scale)
    if resolution % spec.vae_scale:
        raise BenchmarkError(f'{spec.name}: resolution {resolution} is not a '
                             f'multiple of the VAE factor {spec.vae_scale}')
    latent = resolution // spec.vae_scale
    unet = build_unet(spec, dtype, device)
    params = sum(p.numel() for p in unet.parameters())
    ckpt = sum(t.numel() * t.element_size()
               for t in unet.state_dict().values())
    latents, kwargs = _inputs(dict(unet.config), batch_size, resolution,
                              latent, dtype, device)
    timesteps = torch.linspace(999, 0, steps).round().long().to(device)
    memory = PeakMemory(device)
    memory.reset()
    _denoise(unet, latents, kwargs, timesteps[:1].repeat(warmup), device)
    seconds = _denoise(unet, latents, kwargs, timesteps, device)
    memory.stop()
    row = dict(
        name=spec.name, role=spec.role,
        teacher=spec.teacher.name if spec.teacher else None,
        source=spec.source, weights=spec.weights or 'random',
        params=params, params_ratio_vs_teacher=None,
        checkpoint_bytes=ckpt,
        resolution=resolution, latent_size=latent,
        latency_ms_per_step=round(seconds / steps * 1e3, 3),
        latency_s_total=round(seconds, 6),
        speedup_vs_teacher=None,
        peak_mem_bytes=memory.peak(),
        mem_before_steps_bytes=memory.start,
        peak_mem_method=memory.method)
    if spec.weights:
        files = (_weight_files(spec.weights)[0]
                 if osp.isdir(spec.weights) else [spec.weights])
        row['checkpoint_file_bytes'] = sum(map(osp.getsize, files))
    del unet, latents, kwargs
    release_freed_memory()  # (a full collection first)
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return row, seconds


def _machine(device: torch.device) -> Dict:
    import diffusers
    cpu = platform.processor()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next((line.split(':', 1)[1].strip() for line in f
                        if line.startswith('model name')), cpu)
    except OSError:
        pass
    return dict(
        torch=torch.__version__, diffusers=diffusers.__version__,
        python=platform.python_version(), platform=platform.platform(),
        device=(torch.cuda.get_device_name(device)
                if device.type == 'cuda' else cpu),
        cpu=cpu, cpu_count=os.cpu_count(),
        cpu_affinity=len(os.sched_getaffinity(0)),
        threads=torch.get_num_threads(),
        # at the start: other processes on the CPU distort timings
        load_avg_1m=round(os.getloadavg()[0], 2))



def benchmark_infer(configs: Sequence[str] = (),
                    arch: Sequence[str] = (),
                    resolution: Optional[int] = None,
                    steps: int = 25,
                    batch_size: int = 1,
                    warmup: int = 1,
                    dtype: Optional[str] = None,
                    device: Optional[str] = None,
                    teacher_weights: Optional[str] = None,
                    student_weights: Optional[str] = None,
                    cfg_options: Optional[Dict] = None,
                    width_divisor: int = 1,
                    log: Callable[[str], None] = _stderr) -> Dict:
    """Measure the UNets of ``configs`` and ``arch`` names (presets or
    single models) one at a time: ``dict(machine, settings, rows)``, one
    row per distinct UNet, students with their ratios to their teacher.
    ``dtype`` defaults to float16 on cuda, float32 on cpu; ``device`` to
    cuda when available; ``width_divisor``: the ``arch`` names narrowed
    (:func:`specs_from_archs`). Raises :class:`BenchmarkError` for a request it
    cannot serve."""
    configs, arch = list(configs), list(arch)
    device = torch.device(device or (
        'cuda' if torch.cuda.is_available() else 'cpu'))
    dtype_name = dtype or ('float16' if device.type == 'cuda' else 'float32')
    machine = _machine(device)
    specs = specs_from_archs(arch, width_divisor)
    for path in configs:
        specs += specs_from_config(path, cfg_options)
    specs = dedupe(specs)
    apply_weights(specs, 'teacher', teacher_weights)
    apply_weights(specs, 'student', student_weights)

    rows, seconds = [], {}
    for spec in specs:
        log(f'[benchmark_infer] {spec.role} {spec.name} ...')
        row, seconds[id(spec)] = measure(
            spec, DTYPES[dtype_name], device, resolution=resolution,
            steps=steps, batch_size=batch_size, warmup=warmup)
        log(f'[benchmark_infer]   {row["params"] / 1e6:.1f}M params, '
            f'{row["latency_ms_per_step"]:.1f} ms/step, peak '
            f'{row["peak_mem_bytes"] / 2**30:.2f} GiB')
        rows.append(row)
    by_id = {id(s): r for s, r in zip(specs, rows)}
    for spec, row in zip(specs, rows):
        t = spec.teacher
        if t is None:
            continue
        t_row = by_id.get(id(t))
        t_params = t_row['params'] if t_row else count_parameters(
            _clean(t.config))
        row['params_ratio_vs_teacher'] = round(row['params'] / t_params, 4)
        if t_row and t_row['resolution'] == row['resolution']:
            row['speedup_vs_teacher'] = round(
                seconds[id(t)] / seconds[id(spec)], 4)
    for row in rows:
        if row['role'] == 'teacher':
            row['params_ratio_vs_teacher'] = row['speedup_vs_teacher'] = 1.0

    return dict(
        machine=machine,
        settings=dict(
            configs=configs, arch=arch,
            cfg_options=cfg_options, resolution=resolution,
            steps=steps, warmup=warmup,
            batch_size=batch_size, unet_batch=2 * batch_size,
            text_len=TEXT_LEN, dtype=dtype_name, device=str(device),
            width_divisor=width_divisor),
        rows=rows)
