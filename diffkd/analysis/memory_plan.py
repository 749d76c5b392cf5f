"""Peak device memory of a training config, planned without the device
(``tools/analysis_tools/memory_plan.py``; docs/performance.md, "Memory
planner").

peak = resident + max(forward/backward, optimizer step), where

* resident: every part's weights in its dtype (trainable student or UNet,
  frozen teacher, VAE and text encoders; the last two are absent when the
  dataset is a ``CachedLatentDataset``), the fp32 master copy of a bf16
  student (``model.student.dtype='bfloat16'``), the optimizer states (AdamW
  2 fp32 per element, ``AdamW8bit`` 2 bytes per element plus one fp32
  absmax per 256-element block and state, SGD 1 momentum) unless DeepSpeed
  offloads them (``strategy.zero_optimization.offload_optimizer.device=
  'cpu'``, which takes the fp32 master copy along), and an EMA copy;
* forward/backward: one training step traced (:class:`LiveTensors`) at two
  small sizes, event by event: the activations' live bytes are fitted
  linear in batch x pixels per event (the op sequence does not depend on
  the size) and added to the gradients and autocast weight copies live at
  that event; the largest sum is the phase's peak;
* optimizer step: the gradients plus the optimizer's temporaries (torch's
  multi-tensor AdamW: one fp32 tensor per element, e.g. its
  ``sqrt(exp_avg_sq)``).

Parameter counts are exact at full width: published models are built on the
meta device. The traced step runs the config's own model and data path
(``model.train_step``'s forward, losses and backward) with random weights;
a published architecture is traced at ``1 / width_divisor`` of its widths
(block types, layers, heads and attention kept), activations multiplied
back by ``width_divisor`` (they are linear in channel width), gradients and
weight copies by the parameter ratio. Attention is planned as a GPU runs it
(flash / memory-efficient: no score matrix kept); a trace at small size has
no large score matrix either.
"""
import copy
import math
import os.path as osp
import tempfile
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from torch.utils._python_dispatch import TorchDispatchMode

from diffkd.analysis.benchmark_train import (encoder_modules,
                                             published_names,
                                             use_random_weights, use_toy_data)
from diffkd.models.diffusion.random_init import (ARCHITECTURES,
                                                 architecture_of,
                                                 random_unet_config)
from diffkd.utils.paths import find_config
from diffkd.utils.profiling import PeakMemory, release_freed_memory

GIB = 1024**3
# Optimizer state bytes per trainable element, and temporaries of the step
# (bytes per element) on the device.
OPTIMIZERS = {
    'AdamW': (8, 4), 'Adam': (8, 4), 'AdamW8bit': (2, 0), 'Adam8bit': (2, 0),
    'SGD': (4, 0),
}
# bitsandbytes' blockwise 8-bit states: one fp32 absmax per block per state.
BNB_BLOCK = 256
TRACE_SIZES = ((1, 64), (1, 128))  # (batch, resolution) of the two traces
DTYPES = {None: torch.float32, 'float32': torch.float32,
          'bfloat16': torch.bfloat16, 'float16': torch.float16}


# ---------------------------------------------------------------- config
@dataclass
class Switches:
    """What a config asks for that changes the memory (docs/performance.md
    lists each)."""
    distill: bool
    teacher_dtype: Optional[str]
    student_dtype: Optional[str]
    gradient_checkpointing: bool
    optimizer: str
    offload: bool
    autocast: Optional[str]
    cached: bool
    ema: bool
    fused: bool = False  # fused optimizer kernel: no whole-model temporary

    @classmethod
    def of(cls, cfg: Config) -> 'Switches':
        model = cfg.model
        distill = model.type == 'DiffusionDistiller'
        student = model.student if distill else model
        wrapper = cfg.optim_wrapper
        zero = (cfg.get('strategy') or {}).get('zero_optimization') or {}
        offload = (zero.get('offload_optimizer') or {}).get('device')
        autocast = wrapper.get('dtype')
        if wrapper.get('type') == 'DeepSpeedOptimWrapper' and (
                cfg.strategy.get('bf16') or {}).get('enabled'):
            autocast = 'bfloat16'
        return cls(
            distill=distill,
            teacher_dtype=model.teacher.get('dtype') if distill else None,
            student_dtype=student.get('dtype'),
            gradient_checkpointing=bool(
                student.get('gradient_checkpointing', False)),
            optimizer=wrapper.optimizer.type,
            offload=offload == 'cpu',
            autocast=autocast,
            cached=cfg.train_dataloader.dataset.get('type') ==
            'CachedLatentDataset',
            ema=any(str(h.get('type', '')).endswith('EMAHook')
                    for h in cfg.get('custom_hooks') or []),
            fused=bool(wrapper.optimizer.get('fused')))


def load_config(config) -> Config:
    if isinstance(config, Config):
        return copy.deepcopy(config)
    path = config if osp.isfile(config) else find_config(config)
    return Config.fromfile(path)


# ------------------------------------------------------------ parameters
def _count(module) -> int:
    return sum(p.numel() for p in module.parameters())


def full_width_counts(cfg: Config) -> Dict[str, int]:
    """Parameters per part of the config's published architecture, built
    on the meta device (nothing is allocated)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from diffkd.models.compression import build_compression
    from diffkd.models.diffusion.random_init import _text_encoder
    names = sorted(set(published_names(cfg._cfg_dict.to_dict())))
    if len(names) != 1:
        raise ValueError(f'memory plan: the config names {names or "no"} '
                         'published model; one architecture is planned')
    key = architecture_of(names[0])
    arch = ARCHITECTURES[key]
    t_cfg = random_unet_config(key)
    counts = {}
    with torch.device('meta'):
        counts['unet'] = _count(UNet2DConditionModel.from_config(t_cfg))
        compression = cfg.model.get('compression')
        if cfg.model.type == 'DiffusionDistiller':
            counts['teacher'] = counts['unet']
            if compression is not None:
                s_cfg = build_compression(compression)(t_cfg).student_config
                counts['unet'] = _count(
                    UNet2DConditionModel.from_config(s_cfg))
        counts['vae'] = _count(AutoencoderKL(**arch['vae']))
        for i, te in enumerate(arch['text_encoders']):
            counts['text_encoder' + ('_2' if i else '')] = _count(
                _text_encoder(te, projection=i == 1))
    return counts


def _part(name: str) -> str:
    """Part of a parameter name of a built diffkd model."""
    parts = name.split('.')
    if parts[0] == 'teacher':
        return 'teacher'
    if parts[0] == 'student':
        parts = parts[1:]
    return parts[0] if parts[0] != 'unet' else 'unet'


# ------------------------------------------------------------- the trace
class LiveTensors(TorchDispatchMode):
    """Bytes of the tensors created inside the mode and still alive, after
    every op, in three kinds: parameter gradients, autocast copies of
    trainable weights, everything else (activations). A storage counts once
    (views share it) and leaves when it is freed."""

    def __init__(self, trainable: Sequence[torch.nn.Parameter]):
        super().__init__()
        self.trainable = {id(p) for p in trainable}
        self.live = {'act': 0, 'grad': 0, 'cast': 0}
        self.kind: Dict[int, Tuple[str, int]] = {}
        self.refs: Dict[int, weakref.ref] = {}
        self.events: List[Tuple[int, int, int, bool]] = []
        self.ops: List[str] = []  # the op of each event, to align traces
        self.encoding = False
        self._handles = [p.register_post_accumulate_grad_hook(self._grad)
                         for p in trainable]

    def _add(self, storage, kind: str):
        key = storage._cdata
        if key in self.kind or storage.nbytes() == 0:
            return
        self.kind[key] = (kind, storage.nbytes())
        self.live[kind] += storage.nbytes()
        self.refs[key] = weakref.ref(storage, lambda _, k=key: self._free(k))

    def _free(self, key):
        kind, nbytes = self.kind.pop(key)
        self.live[kind] -= nbytes
        self.refs.pop(key, None)

    def _grad(self, param):
        st = param.grad.untyped_storage()
        if st._cdata in self.kind and self.kind[st._cdata][0] != 'grad':
            kind, nbytes = self.kind[st._cdata]
            self.live[kind] -= nbytes
            self.live['grad'] += nbytes
            self.kind[st._cdata] = ('grad', nbytes)
        self._mark('grad')

    def _mark(self, op: str):
        self.ops.append(op)
        self.events.append((self.live['act'], self.live['grad'],
                            self.live['cast'], self.encoding))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        cast = (func is torch.ops.aten._to_copy.default and args
                and id(args[0]) in self.trainable)
        # a view or in-place result shares an input's storage: not new
        inputs = {t.untyped_storage()._cdata
                  for t in torch.utils._pytree.tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and \
                    t.untyped_storage()._cdata not in inputs:
                self._add(t.untyped_storage(), 'cast' if cast else 'act')
        self._mark(func.__name__)
        return out

    def close(self):
        for h in self._handles:
            h.remove()


@contextmanager
def _encoding_marks(model, tracker: LiveTensors):
    """Flag the events inside the VAE encoder and text encoders (a latent
    cache runs none of them on the device)."""
    wrapper = getattr(model, 'student', model)
    handles = []
    for module in encoder_modules(wrapper):
        handles.append(module.register_forward_pre_hook(
            lambda *_: setattr(tracker, 'encoding', True)))
        handles.append(module.register_forward_hook(
            lambda *_: setattr(tracker, 'encoding', False)))
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _runnable(cfg: Config, width_divisor: int, folder: str) -> Config:
    """The config with random-weight copies of its published models at
    ``1 / width_divisor`` width, and the switches this build does not take
    yet planned from the config instead (they do not change the step's
    activations)."""
    cfg = copy.deepcopy(cfg)
    if published_names(cfg._cfg_dict.to_dict()):
        use_random_weights(cfg, folder, log=lambda msg: None,
                           width_divisor=width_divisor)
    student = cfg.model.student if cfg.model.type == 'DiffusionDistiller' \
        else cfg.model
    student.pop('dtype', None)
    return cfg


def build_parts(cfg: Config):
    """(model, optim wrapper for the step's precision) of a runnable
    config, as the runner builds them."""
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    import diffkd.engine  # noqa: F401  (registers the optim wrapper)
    from diffkd.registry import MODELS
    with DefaultScope.overwrite_default_scope('diffkd'):
        model = MODELS.build(cfg.model)
        wrapper = copy.deepcopy(cfg.optim_wrapper)
        if wrapper.type != 'DiffusionOptimWrapper':  # DeepSpeed steps itself
            wrapper = dict(type='DiffusionOptimWrapper',
                           constructor='TrainableParamsOptimWrapperConstructor',
                           dtype=Switches.of(cfg).autocast,
                           optimizer=wrapper.optimizer)
        try:
            optim = build_optim_wrapper(model, wrapper)
        except (KeyError, ImportError, RuntimeError):
            # An optimizer this machine cannot build (bitsandbytes' 8-bit
            # needs CUDA): the traced forward/backward does not use it.
            wrapper.optimizer = dict(type='AdamW', lr=1e-5)
            optim = build_optim_wrapper(model, wrapper)
    return model, optim


def batch_of(cfg: Config, batch: int, resolution: int, seed: int = 0):
    """One batch of the toy captioned shapes at ``resolution`` through the
    config's collate (the data's content does not change the memory)."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    import diffkd.datasets  # noqa: F401  (registers datasets, collates)
    cfg = copy.deepcopy(cfg)
    use_toy_data(cfg, resolution)
    cfg.train_dataloader.batch_size = batch
    if 'batch_size' in cfg.train_dataloader.dataset:
        cfg.train_dataloader.dataset.batch_size = batch
    with DefaultScope.overwrite_default_scope('diffkd'):
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=seed)
        return next(iter(loader))


def forward_backward(model, optim, data):
    """``model.train_step`` without the optimizer step: the forward under
    the wrapper's precision, the losses, the backward."""
    with optim.optim_context(model):
        data = model.data_preprocessor(data, True)
        losses = model._run_forward(data, mode='loss')
    loss, _ = model.parse_losses(losses)
    optim.backward(loss)


def trace_step(model, optim, data) -> List[Tuple[Tuple, str]]:
    """Events ((activation, gradient, weight-copy bytes, inside an
    encoder), op name) of one forward/backward; gradients are set to None
    first and after."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optim.zero_grad()
    torch.manual_seed(0)
    tracker = LiveTensors(trainable)
    try:
        with _encoding_marks(model, tracker), tracker:
            forward_backward(model, optim, data)
    finally:
        tracker.close()
    optim.zero_grad()
    return list(zip(tracker.events, tracker.ops))


_TRACES: Dict[str, Tuple] = {}


def _traced(cfg: Config, width_divisor: int, sizes) -> Tuple:
    """(traces at ``sizes``, parameters per part, dtype per part, trainable
    parameters) of the config's model; kept per model config in this
    process (the optimizer, data and cache switches do not change them)."""
    import json
    key = json.dumps([cfg.model.to_dict(), cfg.optim_wrapper.get('dtype'),
                      width_divisor, sizes], sort_keys=True, default=str)
    if key in _TRACES:
        return _TRACES[key]
    with tempfile.TemporaryDirectory() as folder:
        run_cfg = _runnable(cfg, width_divisor, folder)
        model, optim = build_parts(run_cfg)
        traces = [trace_step(model, optim, batch_of(run_cfg, b, r))
                  for b, r in sizes]
        counts, dtypes, trainable = {}, {}, 0
        for name, p in model.named_parameters():
            part = _part(name)
            counts[part] = counts.get(part, 0) + p.numel()
            dtypes[part] = p.dtype
            trainable += p.numel() if p.requires_grad else 0
        del model, optim
        release_freed_memory()
    _TRACES[key] = (traces, counts, dtypes, trainable)
    return _TRACES[key]


# -------------------------------------------------------------- the plan
@dataclass
class Plan:
    config: str
    batch: int
    resolution: int
    switches: Switches
    resident: Dict[str, int]
    forward_backward: int
    step: int
    notes: List[str] = field(default_factory=list)
    # per event: (activation intercept, slope per batch*pixel, gradient +
    # weight-copy bytes), at full width
    _events: List[Tuple[float, float, float]] = field(default_factory=list,
                                                      repr=False)

    @property
    def peak(self) -> int:
        return sum(self.resident.values()) + max(self.forward_backward,
                                                 self.step)

    def fb_at(self, batch: int, resolution: int) -> int:
        s = batch * resolution**2
        return int(max(a + b * s + g for a, b, g in self._events))

    def peak_at(self, batch: int, resolution: int) -> int:
        return sum(self.resident.values()) + max(
            self.fb_at(batch, resolution), self.step)

    def largest_batch(self, card_gib: float, resolution: Optional[int] = None
                      ) -> int:
        """Largest batch whose planned peak fits ``card_gib`` GiB (0: not
        even one)."""
        resolution = resolution or self.resolution
        limit, batch = card_gib * GIB, 0
        while batch < 4096 and self.peak_at(batch + 1, resolution) <= limit:
            batch += 1
        return batch

    def breakdown(self) -> Dict[str, int]:
        rows = dict(self.resident)
        rows['forward/backward (activations, gradients, weight copies)'] = \
            self.forward_backward
        rows['optimizer step (gradients, temporaries)'] = self.step
        return rows

    def as_dict(self, card_gib: float) -> Dict:
        return dict(config=self.config, batch=self.batch,
                    resolution=self.resolution,
                    switches=self.switches.__dict__,
                    resident_bytes=self.resident,
                    forward_backward_bytes=self.forward_backward,
                    step_bytes=self.step, peak_bytes=self.peak,
                    card_gib=card_gib,
                    largest_batch=self.largest_batch(card_gib),
                    notes=self.notes)


def _aligned(e1, e2):
    """Pairs of events of the same op in two traces. A random branch (a
    caption dropped in one batch, not in the other) adds a few ops to one
    trace; the rest match in order."""
    if [op for _, op in e1] == [op for _, op in e2]:
        return [(a, b) for (a, _), (b, _) in zip(e1, e2)]
    from difflib import SequenceMatcher
    matcher = SequenceMatcher(None, [op for _, op in e1],
                              [op for _, op in e2], autojunk=False)
    pairs = []
    for i, j, n in matcher.get_matching_blocks():
        pairs += [(e1[i + k][0], e2[j + k][0]) for k in range(n)]
    if len(pairs) < 0.99 * max(len(e1), len(e2)):
        raise RuntimeError(
            f'memory plan: the two traced steps ran different ops ({len(e1)} '
            f'and {len(e2)}, {len(pairs)} in common); the step must not '
            'depend on the size')
    return pairs


def _fit(traces, sizes, act_scale: float, other_scale: float,
         drop_encoding: bool):
    """Per-event linear fit of the activations in batch x pixels, with the
    gradients of that event scaled by ``other_scale``."""
    (s1, s2) = sizes
    out = []
    for (a1, g1, c1, enc), (a2, g2, c2, _) in _aligned(*traces):
        if drop_encoding and enc:
            continue
        slope = (a2 - a1) / (s2 - s1)
        intercept = a1 - slope * s1
        out.append((intercept * act_scale, slope * act_scale,
                    max(g1, g2) * other_scale, max(c1, c2) * other_scale))
    return out


def plan(config, batch: int = 1, resolution: int = 1024,
         width_divisor: Optional[int] = None, device: str = 'cuda',
         trace_sizes: Sequence[Tuple[int, int]] = TRACE_SIZES,
         switches: Optional[Dict] = None, full_width: bool = True) -> Plan:
    """Plan the peak device memory of ``config`` (a path, a path relative
    to ``configs/`` or a Config) at ``batch`` x ``resolution`` px on a
    ``device`` ('cuda', or 'cpu' where torch's optimizers loop per
    tensor). ``switches``: :class:`Switches` fields to plan instead of the
    config's (teacher dtype and gradient checkpointing are traced so).
    ``full_width=False`` plans the traced model itself (published models
    at ``1 / width_divisor`` width, as :func:`measure` builds them)."""
    cfg = load_config(config)
    sw = replace(Switches.of(cfg), **(switches or {}))
    if cfg.model.type == 'DiffusionDistiller':
        cfg.model.teacher.dtype = sw.teacher_dtype
        cfg.model.student.gradient_checkpointing = sw.gradient_checkpointing
    else:
        cfg.model.gradient_checkpointing = sw.gradient_checkpointing
    published = bool(published_names(cfg._cfg_dict.to_dict()))
    if width_divisor is None:
        width_divisor = 8 if published else 1
    notes = []
    traces, counts, dtypes, trainable = _traced(cfg, width_divisor,
                                                tuple(trace_sizes))
    if trainable != counts.get('unet'):
        raise ValueError(
            f'memory plan: {cfg.filename} trains {trainable} parameters, '
            f'not its whole UNet ({counts.get("unet")}); LoRA and partial '
            'training are not planned')
    full = full_width_counts(cfg) if published and full_width else counts
    ratio = full['unet'] / counts['unet']
    act_scale = width_divisor if full is not counts else 1
    resident: Dict[str, int] = {}
    s_dtype = DTYPES[sw.student_dtype]
    p_bytes = full['unet'] * s_dtype.itemsize
    resident['trainable UNet weights'] = p_bytes
    if s_dtype != torch.float32:
        resident['fp32 master weights'] = 0 if sw.offload else full['unet'] * 4
        notes.append('bf16 student: gradients in bf16, no autocast copies')
    for part in sorted(counts):
        if part == 'unet' or (sw.cached and part != 'teacher'):
            continue
        dtype = DTYPES[sw.teacher_dtype] if part == 'teacher' else \
            dtypes[part]
        resident[f'frozen {part}'] = full[part] * dtype.itemsize
    if sw.cached:
        notes.append('latent cache: no VAE or text encoder on the device')
    state, temp = OPTIMIZERS.get(sw.optimizer, (None, None))
    if state is None:
        raise ValueError(f'memory plan: optimizer {sw.optimizer!r} has no '
                         f'known state size; known: {sorted(OPTIMIZERS)}')
    if sw.fused or device == 'cpu':
        # fused kernels, and torch's per-tensor loop (its default off
        # CUDA), keep no whole-model temporary
        temp = 0
    if sw.optimizer.endswith('8bit'):
        state_bytes = full['unet'] * state + 2 * 4 * math.ceil(
            full['unet'] / BNB_BLOCK)
    else:
        state_bytes = full['unet'] * state
    if sw.offload:
        state_bytes, temp = 0, 0
        notes.append('DeepSpeed CPU offload: optimizer states and fp32 '
                     'master weights in host memory')
    resident[f'{sw.optimizer} states'] = state_bytes
    if sw.ema:
        resident['EMA weights'] = p_bytes
    events = _fit(traces, [b * r * r for b, r in trace_sizes],
                  act_scale=act_scale, other_scale=ratio,
                  drop_encoding=sw.cached)
    if s_dtype != torch.float32:
        # gradients in the weights' dtype, no autocast copies to make
        events = [(a, b, g * s_dtype.itemsize / 4, 0.0)
                  for a, b, g, _ in events]
    events = [(a, b, g + c) for a, b, g, c in events]
    step = int(full['unet'] * (s_dtype.itemsize + temp))
    result = Plan(config=cfg.filename or str(config), batch=batch,
                  resolution=resolution, switches=sw, resident=resident,
                  forward_backward=0, step=step, notes=notes,
                  _events=events)
    result.forward_backward = result.fb_at(batch, resolution)
    return result


# Each memory switch of docs/performance.md, added in turn to a baseline
# with none: (row name, Switches fields).
LADDER = (
    ('baseline: fp32 teacher, no checkpointing, AdamW, fp32 student',
     dict(teacher_dtype=None, gradient_checkpointing=False,
          optimizer='AdamW', fused=True, student_dtype=None, offload=False,
          cached=False)),
    ('+ teacher in bf16', dict(teacher_dtype='bfloat16')),
    ('+ gradient checkpointing', dict(gradient_checkpointing=True)),
    ('+ 8-bit AdamW (bitsandbytes)', dict(optimizer='AdamW8bit',
                                          fused=False)),
    ('+ bf16 student, fp32 master weights', dict(student_dtype='bfloat16')),
    ('+ DeepSpeed CPU offload of optimizer states', dict(offload=True)),
    ('+ latent and text-embedding cache', dict(cached=True)),
)


def ladder(config, batch: int = 1, resolution: int = 1024,
           **kwargs) -> List[Tuple[str, Plan]]:
    """The plan of ``config`` with the switches of :data:`LADDER` added
    one by one."""
    rows, switches = [], {}
    for name, change in LADDER:
        switches.update(change)
        rows.append((name, plan(config, batch, resolution,
                                switches=dict(switches), **kwargs)))
    return rows


# ------------------------------------------------------------ validation
def _storage_bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        st = t.untyped_storage()
        seen[st._cdata] = st.nbytes()
    return sum(seen.values())


_TENSOR_TYPES = (torch.Tensor, torch.nn.Parameter)


def _live_tensor_bytes() -> int:
    """Bytes of every tensor storage the process holds (the weights, the
    optimizer's states, what a model keeps from its last step...)."""
    import gc
    gc.collect()
    seen = {}
    for obj in gc.get_objects():
        if type(obj) in _TENSOR_TYPES and obj.device.type == 'cpu':
            st = obj.untyped_storage()
            seen[st._cdata] = st.nbytes()
    return sum(seen.values())


@contextmanager
def returning_freed_memory(threshold: int = 4096):
    """glibc serves blocks from ``threshold`` bytes up with their own
    mappings, so a freed tensor leaves the resident set at once (as CUDA's
    allocated bytes fall) instead of staying in the heap; glibc's default
    (128 KiB, raised as large blocks are freed) is set back after."""
    import ctypes
    try:
        libc = ctypes.CDLL('libc.so.6')
    except OSError:
        yield
        return
    m_mmap_threshold = -3
    libc.mallopt(m_mmap_threshold, threshold)
    try:
        yield
    finally:
        libc.mallopt(m_mmap_threshold, 128 * 1024)


def measure(config, sizes: Sequence[Tuple[int, int]],
            width_divisor: int = 1) -> List[int]:
    """Peak memory of a real training step of a runnable config on the
    CPU, in bytes, at each (batch, resolution) of ``sizes``.

    A first step at each size loads what a first call loads (kernels and
    their per-shape caches) and makes the optimizer's states. Before each
    measured step, the process's
    resident set minus the bytes of every live tensor is its floor (code,
    libraries, Python objects); the step's peak is the resident-set
    high-water mark of that step (forward, backward, optimizer step) above
    the floor: the weights, states, EMA copy, activations, gradients and
    temporaries all count, at the allocator's real sizes. Published models
    are random-weight copies at ``1 / width_divisor`` width."""
    cfg = load_config(config)
    batches = [batch_of(cfg, b, r) for b, r in sizes]
    peaks = []
    with returning_freed_memory(), tempfile.TemporaryDirectory() as tmp:
        model, optim = build_parts(_runnable(cfg, width_divisor, tmp))
        ema = [p.detach().clone() for p in model.parameters()
               if p.requires_grad] if Switches.of(cfg).ema else []
        memory = PeakMemory('cpu')
        for data in batches:
            # first call at this size: kernels and their caches per shape
            model.train_step(copy.deepcopy(data), optim)
            release_freed_memory()
            memory.reset()
            floor = memory.start - _live_tensor_bytes()
            memory.reset()
            model.train_step(data, optim)
            peaks.append(memory.peak() - floor)
        del model, optim, ema, data, batches
        release_freed_memory()
    return peaks


__all__ = ['LADDER', 'LiveTensors', 'Plan', 'Switches', 'ladder',
           'returning_freed_memory', 'batch_of', 'build_parts',
           'full_width_counts', 'measure', 'plan', 'trace_step']
