"""The benchmark suite: training throughput with MFU and inference latency
of the real architectures, as one command
(``tools/analysis_tools/benchmark_suite.py``; docs/performance.md, "GPU
suite").

Per training case (a distillation config at a resolution) it

1. builds the config's runner once and, before its first iteration (a hook
   at LOWEST priority, so the model and optimizer are as they will train),
   counts the FLOPs of one ``train_step`` with
   :class:`torch.utils.flop_counter.FlopCounterMode` (teacher forward,
   student forward and backward; the VAE encoder and text encoders apart)
   and looks for the largest batch: ``train_step`` at 1, 2, 4, ... until
   CUDA runs out of memory, the preset's cap, or the time budget;
2. times that batch with :func:`benchmark_train` (engine, then the plain
   PyTorch :class:`ReferenceLoop`): seconds per iteration, images per
   second, peak memory, engine/reference ratio;
3. MFU = FLOPs per iteration / seconds per iteration / the device's peak.

The peak is dense bf16 from :data:`PEAK_BF16_TFLOPS` matched on the CUDA
device name, else ``peak_tflops`` given by the user, else a dense matmul
measured in the run's dtype ('measured matmul'). Inference is
:func:`benchmark_infer` on the preset's architecture lists. Every model has
random weights (nothing is downloaded). The ``gpu`` and ``tiny`` presets
run this same code; only configs, sizes, dtype and device differ.
"""
import contextlib
import copy
import datetime
import os.path as osp
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.hooks import Hook
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from diffkd.analysis.benchmark_infer import _machine, benchmark_infer
from diffkd.analysis.benchmark_train import (_parts, benchmark_train,
                                             encoder_modules, prepare_config)
from diffkd.apis.train import build_runner
from diffkd.utils.paths import find_config
from diffkd.utils.profiling import release_freed_memory

# Dense bf16 tensor-core TFLOPS (no sparsity), from the vendors' data
# sheets; the first pattern found in torch.cuda.get_device_name() wins.
PEAK_BF16_TFLOPS: List[Tuple[str, str, float]] = [
    (r'H100.*PCIe', 'H100 PCIe', 756.0),
    (r'H100.*NVL', 'H100 NVL', 835.0),
    (r'H100', 'H100 SXM', 989.0),
    (r'H200', 'H200', 989.0),
    (r'A100', 'A100', 312.0),
    (r'L40S', 'L40S', 362.0),
    (r'\bL4\b', 'L4', 121.0),
    (r'RTX 4090', 'RTX 4090', 165.0),
    (r'\bA10\b', 'A10', 125.0),
]
DTYPES = dict(float32=torch.float32, bfloat16=torch.bfloat16)


def _stderr(msg: str):
    print(msg, file=sys.stderr, flush=True)


@dataclass
class TrainCase:
    name: str
    config: str  # 'configs/...', found from any working directory
    resolution: int

    @property
    def path(self) -> str:
        if osp.isfile(self.config):
            return self.config
        return find_config(self.config.split('configs/', 1)[1])


@dataclass
class Preset:
    device: str
    dtype: str  # the training and inference precision
    train: List[TrainCase]
    # (architecture names for benchmark_infer, resolution)
    infer: List[Tuple[List[str], int]]
    infer_steps: int
    max_batch: int  # cap of the batch search
    warmup: int
    iters: int
    random_weights: bool  # the configs name published models
    width_divisor: int = 1  # inference UNets narrowed (random_unet_config)
    flops_at_batch: bool = True  # count at the measured batch, not x batch
    budget_s: float = 0.0  # 0: no time budget
    infer_reserve_s: float = 0.0  # of the budget, kept for inference
    note: str = ''
    cfg_options: Dict = field(default_factory=dict)


# Not part of a training step, and minutes on a real model: samples,
# exports, validation and the end-of-run checkpoint.
_NO_EXTRAS = {
    'custom_hooks': [], 'default_hooks.checkpoint.save_last': False,
    'val_cfg': None, 'val_dataloader': None, 'val_evaluator': None}
_SDXL = ['sdxl_teacher', 'ssd_1b', 'segmind_vega', 'koala_1b', 'koala_700m']
_SD15 = ['sd15_teacher', 'bk_sdm_base', 'bk_sdm_small', 'bk_sdm_tiny']

PRESETS: Dict[str, Preset] = dict(
    gpu=Preset(
        device='cuda', dtype='bfloat16',
        train=[
            TrainCase('ssd_1b', 'configs/ssd_1b/ssd_1b_distill_from_sdxl.py',
                      1024),
            TrainCase('koala_700m',
                      'configs/koala/koala_700m_distill_from_sdxl.py', 1024),
            TrainCase('bk_sdm_small',
                      'configs/bk_sdm/bk_sdm_small_distill_from_sd14.py',
                      512),
        ],
        infer=[(_SDXL, 1024), (_SD15, 512)], infer_steps=25,
        max_batch=256, warmup=2, iters=5, random_weights=True,
        # Model FLOPs are linear in the batch; counted at batch 1 (the
        # count holds every activation: no gradient checkpointing).
        flops_at_batch=False,
        budget_s=450.0, infer_reserve_s=60.0,
        note='Real architectures, random weights, toy captioned shapes '
        'resized to the resolution; bf16 autocast, teacher in bf16 (also '
        "for BK-SDM, whose config says fp16: MFU is over the bf16 peak).",
        cfg_options={'model.teacher.dtype': 'bfloat16',
                     'optim_wrapper.dtype': 'bfloat16'}),
    tiny=Preset(
        device='cpu', dtype='float32',
        train=[
            TrainCase('ssd_1b', 'configs/toy/ssd_1b_distill_toy.py', 32),
            TrainCase('koala_700m', 'configs/toy/koala_700m_distill_toy.py',
                      32),
            TrainCase('bk_sdm_small',
                      'configs/toy/bk_sdm_small_distill_toy.py', 32),
        ],
        infer=[(_SDXL, 32), (_SD15, 32)], infer_steps=2,
        max_batch=2, warmup=1, iters=1, random_weights=False,
        width_divisor=8, flops_at_batch=True,
        note='CPU check of the gpu preset: the toy twins of the same three '
        'configs (toy pipelines, fp32: a CPU without bf16 arithmetic is '
        '4-5x slower in bf16) and, for inference, the real UNet topologies '
        'at 1/8 width (the full SDXL UNet is 10 GB in fp32).',
        cfg_options={'model.teacher.dtype': None,
                     'optim_wrapper.dtype': None}),
)


# ------------------------------------------------------------ peak FLOPS
def table_peak(device_name: str) -> Optional[Tuple[float, str]]:
    """(dense bf16 TFLOPS, source) of a known CUDA device name."""
    for pattern, label, tflops in PEAK_BF16_TFLOPS:
        if re.search(pattern, device_name):
            return tflops, f'table: {label} dense bf16 (no sparsity)'
    return None


def measured_matmul_tflops(device: torch.device, dtype: torch.dtype,
                           n: int = 1024, seconds: float = 0.3) -> float:
    """Best throughput of an n x n dense matmul over ``seconds``."""
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    sync = (torch.cuda.synchronize if device.type == 'cuda' else
            (lambda: None))
    torch.mm(a, b)
    best, end = float('inf'), time.perf_counter() + seconds
    while time.perf_counter() < end:
        sync()
        t = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def device_peak(device: torch.device, dtype: str,
                peak_tflops: Optional[float] = None) -> Dict:
    """The peak MFU divides by: ``dict(tflops, source)``."""
    if peak_tflops:
        return dict(tflops=float(peak_tflops), source='--peak-tflops')
    if device.type == 'cuda' and dtype == 'bfloat16':
        found = table_peak(torch.cuda.get_device_name(device))
        if found:
            return dict(tflops=found[0], source=found[1])
    n = 4096 if device.type == 'cuda' else 1024
    return dict(tflops=measured_matmul_tflops(device, DTYPES[dtype], n),
                source=f'measured matmul ({dtype}, {n}x{n}, '
                f'{torch.get_num_threads()} threads)'
                if device.type == 'cpu' else
                f'measured matmul ({dtype}, {n}x{n})')


# ---------------------------------------------------------------- FLOPs
def _cpu_attention(q, k, v, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(q, k, v)


def _cpu_attention_backward(grad_out, q, k, v, *args, out_shape=None,
                            **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count
    return sdpa_backward_flop_count(grad_out, q, k, v)


# torch counts the CUDA attention kernels; the CPU one with the same formula.
_ATTENTION = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu:
    _cpu_attention,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward:
    _cpu_attention_backward,
}


def flop_counter() -> FlopCounterMode:
    """A FlopCounterMode that also counts PyTorch's CPU attention kernel."""
    return FlopCounterMode(display=False, custom_mapping=_ATTENTION)


def count_step_flops(model, optim_wrapper, batch) -> Dict[str, int]:
    """FLOPs of one engine ``train_step`` on ``batch``: ``teacher_forward``,
    ``encode`` (VAE encoder and text encoders) and
    ``student_forward_backward`` (the rest: the student's forward and
    backward). Gradient checkpointing is off while counting: its recomputed
    forward is not model work."""
    wrapper, teacher = _parts(model)
    counter = flop_counter()
    totals = dict(teacher_forward=0, encode=0)
    handles = []

    def charge(module, stage):
        start = {}

        def pre(*_):
            start['f'] = counter.get_total_flops()

        def post(*_):
            totals[stage] += counter.get_total_flops() - start.pop('f')

        handles.extend([module.register_forward_pre_hook(pre),
                        module.register_forward_hook(post)])

    for module in encoder_modules(wrapper):
        charge(module, 'encode')
    if teacher is not None:
        charge(teacher, 'teacher_forward')
    unet = wrapper.unet
    recompute = getattr(unet, 'is_gradient_checkpointing', False)
    if recompute:
        unet.disable_gradient_checkpointing()
    try:
        with counter:
            model.train_step(batch, optim_wrapper)
    finally:
        for h in handles:
            h.remove()
        if recompute:
            unet.enable_gradient_checkpointing()
    optim_wrapper.zero_grad(set_to_none=True)
    total = counter.get_total_flops()
    totals['student_forward_backward'] = (total - totals['teacher_forward']
                                          - totals['encode'])
    totals['step_total'] = total
    return totals


# ---------------------------------------------------------- batch search
def _free():
    """Memory of dropped models and of a failed step back to the device."""
    release_freed_memory()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def search_batch(step: Callable[[int], float], max_batch: int,
                 fits_in_time: Callable[[int, float], bool],
                 log: Callable[[str], None] = _stderr) -> Dict:
    """The largest batch ``step`` (a training step at a batch, returning
    its seconds) runs: 1, 2, 4, ... until it runs out of memory, the next
    would pass ``max_batch``, or ``fits_in_time(next, seconds of the last)``
    says no. ``dict(batch, stopped_by, tried=[{batch, s or oom}])``."""
    tried, batch, stopped = [], 0, None
    nxt = 1
    while True:
        try:
            seconds = step(nxt)
        except torch.OutOfMemoryError:
            tried.append(dict(batch=nxt, oom=True))
            log(f'benchmark_suite:   batch {nxt}: out of memory')
            stopped = 'out of memory'
            break
        tried.append(dict(batch=nxt, s=seconds))
        log(f'benchmark_suite:   batch {nxt}: {seconds:.3f} s / step')
        batch, nxt = nxt, nxt * 2
        if nxt > max_batch:
            stopped = f'max_batch {max_batch}'
            break
        if not fits_in_time(nxt, seconds):
            stopped = 'time budget'
            break
    if stopped == 'out of memory':
        _free()
    if batch == 0:
        raise RuntimeError('benchmark_suite: batch 1 does not fit in '
                           'memory')
    return dict(batch=batch, stopped_by=stopped, tried=tried)


class _Probe(Hook):
    """Before the first iteration (LOWEST: after every other hook's set-up):
    the FLOP count at batch 1 and the batch search, on the engine's own
    model, optimizer wrapper and dataset."""

    def __init__(self, preset: Preset, fits_in_time, log):
        self.preset, self.fits_in_time, self.log = preset, fits_in_time, log
        self.result: Dict = {}
        self.built = time.monotonic()  # reset when the runner build starts

    def before_train(self, runner):
        # what a runner build costs (the timed run builds one more)
        setup = self.result['setup_s'] = time.monotonic() - self.built
        model = getattr(runner.model, 'module', runner.model)
        loader = runner.train_dataloader
        data, collate = loader.dataset, loader.collate_fn
        device = next(model.parameters()).device

        def batch_of(n):
            return collate([data[i % len(data)] for i in range(n)])

        def step(n):
            batch = batch_of(n)
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            model.train_step(batch, runner.optim_wrapper)
            if device.type == 'cuda':
                torch.cuda.synchronize(device)
            return time.perf_counter() - t

        ow = runner.optim_wrapper
        self.result['flops_batch1'] = count_step_flops(model, ow,
                                                       batch_of(1))
        self.result['gradient_checkpointing'] = bool(getattr(
            _parts(model)[0].unet, 'is_gradient_checkpointing', False))
        # (the counted step was the warm-up: allocations, kernel tuning)
        self.result['search'] = search_batch(
            step, self.preset.max_batch,
            lambda n, last_s: self.fits_in_time(n, last_s, setup), self.log)
        b = self.result['search']['batch']
        if self.preset.flops_at_batch and b != 1:
            self.result['flops_at_batch'] = count_step_flops(
                model, ow, batch_of(b))
        ow.zero_grad(set_to_none=True)


def probe_config(case: TrainCase, preset: Preset, work_dir: str,
                 weights_dir: str, fits_in_time, log) -> Dict:
    """Batch search and FLOP count of one case, in a runner of its own."""
    options = dict(preset.cfg_options, **_NO_EXTRAS)
    options['train_dataloader.batch_size'] = 1
    cfg, _ = prepare_config(case.path, work_dir, options,
                            random_weights=preset.random_weights,
                            toy_data=case.resolution,
                            weights_dir=weights_dir, log=log)
    # The probe runs before the loop; one iteration, as a schedule without
    # an end of its own ends at max_iters and refuses 0.
    cfg.train_cfg.max_iters = 1
    probe = _Probe(preset, fits_in_time, log)
    with contextlib.redirect_stdout(sys.stderr):
        probe.built = time.monotonic()
        runner = build_runner(cfg)
        runner.register_hook(probe, priority='LOWEST')
        runner.train()
    del runner
    _free()
    return probe.result


# --------------------------------------------------------------- training
def _case_flops(probe: Dict, batch: int) -> Dict:
    one = probe['flops_batch1']
    if 'flops_at_batch' in probe and probe['search']['batch'] == batch:
        counted, at, how = probe['flops_at_batch'], batch, 'counted'
    else:
        counted = {k: v * batch for k, v in one.items()}
        at, how = 1, (f'counted at batch 1, x {batch} (model FLOPs are '
                      'linear in the batch)' if batch != 1 else 'counted')
    return dict(
        teacher_forward=counted['teacher_forward'],
        student_forward_backward=counted['student_forward_backward'],
        encode=counted['encode'], step_total=counted['step_total'],
        counted_at_batch=at, method=f'torch.utils.flop_counter.'
        f'FlopCounterMode over one train_step, {how}; flops_per_iter = '
        'teacher_forward + student_forward_backward (encode not included)',
        batch1=one)


def train_case(case: TrainCase, preset: Preset, peak: Dict, work_dir: str,
               weights_dir: str, deadline: Optional[float], log) -> Dict:
    log(f'benchmark_suite: {case.name} ({case.config}, {case.resolution} '
        f'px)')
    start = time.monotonic()
    timed_iters = 2 * (preset.warmup + preset.iters + 2)  # engine + ref

    def fits_in_time(batch, last_s, setup_s):
        """Whether a search step at ``batch`` and then the timed runs at
        it end before the deadline (a step's time taken as linear in the
        batch)."""
        if deadline is None:
            return True
        step = last_s * batch / (batch // 2)
        need = step * (1 + timed_iters) + setup_s
        return time.monotonic() + need <= deadline

    probe = probe_config(case, preset, osp.join(work_dir, 'probe'),
                         weights_dir, fits_in_time, log)
    batch = probe['search']['batch']
    retries = []
    while True:
        options = dict(preset.cfg_options, **_NO_EXTRAS)
        options['train_dataloader.batch_size'] = batch
        log(f'benchmark_suite:   timing batch {batch}')
        try:
            res = benchmark_train(
                case.path, iters=preset.iters, warmup=preset.warmup,
                reference=True, random_weights=preset.random_weights,
                toy_data=case.resolution, cfg_options=options,
                weights_dir=weights_dir, log=log)
            break
        except torch.OutOfMemoryError:
            # the engine's hooks need a little more than the probe's step
            retries.append(batch)
            _free()
            if batch == 1:
                raise
            batch //= 2
    eng = res['engine']
    flops = _case_flops(probe, batch)
    per_iter = flops['teacher_forward'] + flops['student_forward_backward']
    achieved = per_iter / eng['s_per_iter'] / 1e12
    # the iteration without its data loading (a data loader's workers
    # would overlap it with the step)
    step_s = eng['s_per_iter'] - eng['split_s_per_iter']['data']
    return dict(
        name=case.name, config=case.config, resolution=case.resolution,
        dtype=preset.dtype, batch_size=batch,
        batch_search=dict(probe['search'], oom_retries=retries),
        gradient_checkpointing=probe['gradient_checkpointing'],
        setup_s=probe['setup_s'],
        s_per_iter=eng['s_per_iter'], img_per_s=eng['img_per_s'],
        s_per_iter_median=eng['s_per_iter_median'],
        peak_mem_bytes=eng['peak_mem_bytes'], mem_method=eng['mem_method'],
        split_s_per_iter=eng['split_s_per_iter'],
        reference_s_per_iter=res['reference']['s_per_iter'],
        engine_reference_ratio=res['ratio'],
        loss_parity=res['loss_parity'],
        flops_per_iter=per_iter, flops=flops,
        achieved_tflops=achieved, peak_tflops=peak['tflops'],
        peak_source=peak['source'], mfu=achieved / peak['tflops'],
        mfu_without_data=per_iter / step_s / 1e12 / peak['tflops'],
        unet_params=res['unet_params'], feature_pairs=res['feature_pairs'],
        random_weights=res['random_weights'],
        seconds=time.monotonic() - start)


# -------------------------------------------------------------- the suite
def run_suite(preset: str, peak_tflops: Optional[float] = None,
              budget_s: Optional[float] = None,
              log: Callable[[str], None] = _stderr) -> Dict:
    """Run a preset (:data:`PRESETS`); the JSON-ready result."""
    if preset not in PRESETS:
        raise ValueError(f'unknown preset {preset!r}; presets: '
                         f'{", ".join(PRESETS)}')
    p = PRESETS[preset]
    device = torch.device(p.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise RuntimeError(f'preset {preset!r} needs a CUDA device; '
                           'torch sees none (the tiny preset runs on a '
                           'CPU)')
    began = time.monotonic()
    budget = p.budget_s if budget_s is None else budget_s
    deadline = began + budget if budget else None
    machine = _machine(device)
    peak = device_peak(device, p.dtype, peak_tflops)
    log(f'benchmark_suite: peak {peak["tflops"]:.3f} TFLOPS '
        f'({peak["source"]}) on {machine["device"]}')
    work_dir = tempfile.mkdtemp(prefix='benchmark_suite-')
    weights_dir = osp.join(work_dir, 'random_weights')
    train = []
    try:
        weights_s = time.monotonic()
        if p.random_weights:
            # All written first, so the cases share what time is left.
            for case in p.train:
                prepare_config(case.path, osp.join(work_dir, 'weights'),
                               dict(p.cfg_options), random_weights=True,
                               weights_dir=weights_dir, log=log)
        weights_s = time.monotonic() - weights_s
        for i, case in enumerate(p.train):
            case_deadline = None
            if deadline is not None:
                left = deadline - p.infer_reserve_s - time.monotonic()
                case_deadline = (time.monotonic() +
                                 left / (len(p.train) - i))
            train.append(train_case(case, p, peak, work_dir, weights_dir,
                                    case_deadline, log))
            log(f'benchmark_suite:   {train[-1]["s_per_iter"]:.3f} s/iter '
                f'at batch {train[-1]["batch_size"]}, MFU '
                f'{train[-1]["mfu"]:.4f}')
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    infer = []
    for arch, px in p.infer:
        log(f'benchmark_suite: inference {", ".join(arch)} at {px} px, '
            f'{p.infer_steps} steps')
        infer.append(benchmark_infer(
            arch=arch, resolution=px, steps=p.infer_steps, dtype=p.dtype,
            device=p.device, width_divisor=p.width_divisor, log=log))
    return dict(
        preset=preset, note=p.note,
        date=datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec='seconds'),
        torch=torch.__version__, device=machine['device'], machine=machine,
        dtype=p.dtype, peak=peak,
        settings=dict(warmup=p.warmup, iters=p.iters,
                      max_batch=p.max_batch, budget_s=budget or None,
                      infer_steps=p.infer_steps,
                      width_divisor=p.width_divisor,
                      cfg_options=copy.deepcopy(p.cfg_options)),
        train=train,
        infer=[dict(settings=r['settings'], rows=r['rows']) for r in infer],
        random_weights_s=weights_s, elapsed_s=time.monotonic() - began)


# -------------------------------------------------------------- markdown
def _gib(n: Optional[int]) -> str:
    return '—' if n is None else f'{n / 2**30:.2f}'


def to_markdown(result: Dict) -> str:
    """Training and inference tables, with the machine and the peak."""
    peak = result['peak']
    lines = [
        f'# Benchmark suite: preset `{result["preset"]}`', '',
        f'- date: {result["date"]}', f'- device: {result["device"]}',
        f'- torch: {result["torch"]}, dtype: {result["dtype"]}',
        f'- peak: {peak["tflops"]:.3f} TFLOPS ({peak["source"]})',
        f'- note: {result["note"]}', '', '## Training', '',
        '| model | config | px | batch | s / iter | img / s | peak mem '
        '(GiB) | engine / reference time | TFLOP / iter | achieved TFLOPS '
        '| MFU |', '|---|---|---|---|---|---|---|---|---|---|---|']
    for r in result['train']:
        lines.append(
            f'| {r["name"]} | `{r["config"]}` | {r["resolution"]} | '
            f'{r["batch_size"]} | {r["s_per_iter"]:.4g} | '
            f'{r["img_per_s"]:.4g} | {_gib(r["peak_mem_bytes"])} | '
            f'{r["engine_reference_ratio"]["time"]:.3f} | '
            f'{r["flops_per_iter"] / 1e12:.4g} | '
            f'{r["achieved_tflops"]:.4g} | {r["mfu"]:.4f} |')
    lines += ['', '## Inference', '',
              '| model | px | steps | ms / step | total s | speed-up vs '
              'teacher | params (M) | peak mem (GiB) |',
              '|---|---|---|---|---|---|---|---|']
    for block in result['infer']:
        steps = block['settings']['steps']
        for r in block['rows']:
            lines.append(
                f'| {r["name"]} | {r["resolution"]} | {steps} | '
                f'{r["latency_ms_per_step"]:.4g} | '
                f'{r["latency_s_total"]:.4g} | '
                f'{r["speedup_vs_teacher"]:.3f} | '
                f'{r["params"] / 1e6:.1f} | {_gib(r["peak_mem_bytes"])} |')
    return '\n'.join(lines) + '\n'
