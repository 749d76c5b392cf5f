"""Training speed of a config, optionally against a bare PyTorch loop
(``tools/analysis_tools/benchmark_train.py``; docs/performance.md).

:func:`benchmark_train` runs W + N iterations of the config with the runner
``tools/train.py`` builds (same config mapping, hooks, logging, optimizer
wrapper) and times the last N: seconds per iteration, images per second,
peak memory and the split into data, encoders (VAE + text), teacher
forward, student forward + backward, optimizer step and what the engine
adds around them. The engine is observed, never changed: mmengine hooks at
the outermost and innermost priorities mark the iteration and
``train_step``, and torch forward / optimizer-step hooks on the encoders,
the teacher and the optimizer mark the stages inside it.

With ``reference=True`` a :class:`ReferenceLoop`, the training step written
out in plain PyTorch (no Runner, hooks or registries) on the same modules,
batch size, dtype and seed, runs next in the same process; one batch is
scored by both first (:func:`loss_parity`) so the two are known to compute
the same thing.
"""
import contextlib
import copy
import os
import os.path as osp
import platform
import shutil
import statistics
import sys
import tempfile
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook

from diffkd.apis.config import train_config
from diffkd.apis.train import build_runner
from diffkd.models.compression.teacher_configs import KNOWN_TEACHERS
from diffkd.models.diffusion.random_init import save_random_pipeline
from diffkd.utils.paths import find_config
from diffkd.utils.profiling import PeakMemory, StageTimer, release_freed_memory

STAGES = ('data', 'encode', 'teacher_forward', 'student_forward_backward',
          'optimizer', 'engine_other')


def _stderr(msg: str):
    print(msg, file=sys.stderr, flush=True)


def published_names(node) -> List[str]:
    """Known hub ids named anywhere in a config, not found locally."""
    if isinstance(node, dict):
        return [n for v in node.values() for n in published_names(v)]
    if isinstance(node, (list, tuple)):
        return [n for v in node for n in published_names(v)]
    if isinstance(node, str) and node in KNOWN_TEACHERS and not osp.isdir(
            node):
        return [node]
    return []


def _replace_names(node, folders: Dict[str, str]):
    if isinstance(node, dict):
        return type(node)({k: _replace_names(v, folders)
                           for k, v in node.items()})
    if isinstance(node, (list, tuple)):
        return type(node)(_replace_names(v, folders) for v in node)
    return folders.get(node, node) if isinstance(node, str) else node


def use_random_weights(cfg, folder: str,
                       log: Callable[[str], None] = _stderr,
                       reuse: bool = False,
                       width_divisor: int = 1) -> Dict[str, str]:
    """Point the config's published models at random-weight copies of
    their architecture written under ``folder``; returns name -> copy.
    ``reuse``: a copy already complete in ``folder`` (written by an earlier
    call) is used as it is. ``width_divisor``: copies with every width
    divided by it (same topology)."""
    names = sorted(set(published_names(cfg._cfg_dict.to_dict())))
    if not names:
        raise SystemExit(f'--random-weights: the config names no published '
                         f'model ({sorted(KNOWN_TEACHERS)}) missing locally')
    folders = {}
    for name in names:
        out = osp.join(folder, name.replace('/', '--'))
        done = osp.join(out, '.complete')
        if reuse and osp.isfile(done):
            log(f'benchmark: {name} -> random weights in {out}')
            folders[name] = osp.abspath(out)
            continue
        log(f'benchmark: {name} -> random weights')
        folders[name] = save_random_pipeline(name, out,
                                             width_divisor=width_divisor)
        open(done, 'w').close()  # written last: the copy is whole
        release_freed_memory()
    for key in ('model', 'train_dataloader'):
        cfg[key] = _replace_names(cfg[key], folders)
    return folders


def use_toy_data(cfg, size: int):
    """Train on the toy captioned shapes, resized and cropped to size."""
    toy_loader = Config.fromfile(find_config(
        '_base_/datasets/toy_shapes.py')).toy.train_dataloader
    toy = toy_loader.dataset
    for step in toy.pipeline:
        if step.type in ('ResizeShortEdge', 'RandomCropWithCoords',
                         'CenterCropWithCoords'):
            step.size = size
    loader = cfg.train_dataloader
    if loader.get('sampler') is None:  # a streaming dataset batches itself
        if loader.get('batch_size') is None:
            loader.batch_size = loader.dataset.get('batch_size', 1)
        loader.sampler = toy_loader.sampler
        loader.collate_fn = toy_loader.collate_fn
    cfg.train_dataloader.dataset = toy
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.pop('persistent_workers', None)


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _parts(model):
    """(diffusion wrapper, teacher or None) of a built model."""
    model = getattr(model, 'module', model)  # DDP / FSDP wrappers
    if hasattr(model, 'student') and hasattr(model, 'teacher'):
        return model.student, model.teacher
    return model, None


def _summary(timer: StageTimer, iters: int, batch: int, peak: int,
             start: int, method: str) -> Dict:
    t = dict(timer.totals)
    step = t.get('train_step', 0.0)
    split = dict(
        data=t.get('data', 0.0), encode=t.get('encode', 0.0),
        teacher_forward=t.get('teacher_forward', 0.0),
        optimizer=t.get('optimizer', 0.0))
    split['student_forward_backward'] = step - sum(
        split[k] for k in ('encode', 'teacher_forward', 'optimizer'))
    split['engine_other'] = t['iteration'] - step - split['data']
    s_it = t['iteration'] / iters
    return dict(
        s_per_iter=s_it, img_per_s=batch / s_it,
        # Robust to a stall of the machine in one iteration.
        s_per_iter_median=statistics.median(timer.samples['iteration']),
        peak_mem_bytes=peak, working_mem_bytes=peak - start,
        mem_method=method,
        split_s_per_iter={k: split[k] / iters for k in STAGES})


def encoder_modules(wrapper) -> List[torch.nn.Module]:
    """The modules whose forwards are the 'encode' stage: the VAE's
    Encoder (what ``vae.encode`` runs) and the text encoders; absent where
    latents and prompt embeddings are cached."""
    vae = getattr(wrapper, 'vae', None)
    found = [getattr(vae, 'encoder', None)] + [
        getattr(wrapper, n, None)
        for n in getattr(wrapper, 'text_encoder_names', ())]
    return [m for m in found if m is not None]


def time_forwards(modules, timer: StageTimer, stage: str,
                  counts: Callable[[], bool] = lambda: True) -> List:
    """Forward pre-hooks and hooks charging each module's forward to
    ``stage`` while ``counts()``; returns the handles."""
    handles = []
    for module in modules:
        start = {}

        def pre(*_, start=start):
            start['t'] = timer.now()

        def post(*_, start=start):
            if counts() and 't' in start:
                timer.add(stage, timer.now() - start.pop('t'))

        handles += [module.register_forward_pre_hook(pre),
                    module.register_forward_hook(post)]
    return handles


# ---------------------------------------------------------------- engine
class TrainTiming:
    """Stage clock of an mmengine training run, from public hook points.

    mmengine's ``IterBasedTrainLoop.run_iter`` calls every hook's
    ``before_train_iter`` (in priority order), then ``model.train_step``,
    then every hook's ``after_train_iter``. So four marks bound each
    iteration: its start (before_train_iter at HIGHEST, after the data
    was fetched), the start of ``train_step`` (before_train_iter at
    LOWEST), its end (after_train_iter at HIGHEST) and the iteration's end
    (after_train_iter at LOWEST). Inside ``train_step``, forward hooks on
    the VAE encoder and the text encoders time 'encode', on the teacher
    'teacher_forward', and optimizer step hooks 'optimizer'. The clock runs
    after ``warmup`` iterations and stops before the run's last one.
    """

    def __init__(self, timer: StageTimer, memory: PeakMemory, warmup: int):
        self.timer, self.memory, self.warmup = timer, memory, warmup
        self.marks: Dict[str, float] = {}
        self.in_step = False
        self.handles: List = []

    def hooks(self):
        """(hook, priority) pairs to register on the runner."""
        return [(_OuterMarks(self), 'HIGHEST'), (_InnerMarks(self), 'LOWEST')]

    # iteration and train_step edges, called by the two hooks
    def iter_start(self):
        t = self.timer.now()
        if 'end' in self.marks:
            self.timer.add('data', t - self.marks['end'])

    def step_start(self):
        self.marks['step'] = self.timer.now()
        self.in_step = True

    def step_end(self):
        self.in_step = False
        self.timer.add('train_step', self.timer.now() - self.marks['step'])

    def iter_end(self, runner):
        t = self.timer.now()
        if self.timer.active:
            self.timer.add('iteration', t - self.marks['end'])
        self.marks['end'] = t
        if runner.iter + 1 == self.warmup:
            self.timer.active = True
            release_freed_memory()
            self.memory.reset()
            # The clean-up above is not part of the next iteration.
            self.marks['end'] = self.timer.now()
        if runner.iter + 2 == runner.max_iters:
            self.marks['peak'] = self.memory.peak()
            self.timer.active = False

    # stages inside train_step
    def attach(self, model, optimizer):
        """Register the stage hooks on a built model and its optimizer
        (forwards count only inside train_step: sampling and validation
        call the same modules)."""
        wrapper, teacher = _parts(model)

        def counts():
            return self.in_step

        self.handles += time_forwards(encoder_modules(wrapper), self.timer,
                                      'encode', counts)
        if teacher is not None:
            self.handles += time_forwards([teacher], self.timer,
                                          'teacher_forward', counts)
        self.handles += [
            optimizer.register_step_pre_hook(
                lambda *_: self.marks.__setitem__('o', self.timer.now())),
            optimizer.register_step_post_hook(lambda *_: self.timer.add(
                'optimizer', self.timer.now() - self.marks['o']))
        ]

    def detach(self):
        for handle in self.handles:
            handle.remove()
        self.handles = []


class _OuterMarks(Hook):
    """Registered at HIGHEST: first before, first after each iteration."""

    def __init__(self, timing: TrainTiming):
        self.timing = timing

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.timing.iter_start()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.timing.step_end()


class _InnerMarks(Hook):
    """Registered at LOWEST: last before, last after each iteration."""

    def __init__(self, timing: TrainTiming):
        self.timing = timing

    def before_train(self, runner):
        # after every other hook's set-up: the modules as they will train
        self.timing.attach(runner.model, runner.optim_wrapper.optimizer)

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.timing.step_start()

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.timing.iter_end(runner)

    def after_train(self, runner):
        self.timing.detach()


class _StartWeights(Hook):
    """The trainable weights before the first step: the reference loop
    starts from them."""

    def __init__(self):
        self.weights: Dict[str, torch.Tensor] = {}

    def before_train(self, runner):
        self.weights = {
            n: p.detach().to('cpu', copy=True)
            for n, p in runner.model.named_parameters() if p.requires_grad
        }


def run_engine(cfg, warmup: int, iters: int, timer: StageTimer,
               memory: PeakMemory, keep_start_weights: bool = False):
    """Train ``cfg`` for ``warmup + iters`` iterations (plus one) with the
    runner tools/train.py builds; returns (runner, summary, start weights
    or {})."""
    # One iteration more than timed: the end-of-run checkpoint, export and
    # samples happen after the timed window (a run pays them once, not
    # once per `iters` iterations).
    cfg.train_cfg.max_iters = warmup + iters + 1
    runner = build_runner(cfg)
    timing = TrainTiming(timer, memory, warmup)
    for hook, priority in timing.hooks():
        runner.register_hook(hook, priority=priority)
    start = _StartWeights()
    if keep_start_weights:
        runner.register_hook(start, priority='LOWEST')
    try:
        runner.train()
    finally:
        timing.detach()
    result = _summary(timer, iters, cfg.train_dataloader.batch_size,
                      timing.marks['peak'], memory.start, memory.method)
    return runner, result, start.weights


# ------------------------------------------------------------- reference
class ReferenceLoop:
    """The engine's training step written out in plain PyTorch."""

    def __init__(self, model, cfg, dataset, collate_fn, seed: int,
                 cast_dtype=None, loss_scaling: bool = False):
        self.wrapper, self.teacher = _parts(model)
        self.model = model
        w = self.wrapper
        self.device = _device(w.unet)
        self.unet, self.vae, self.sched = w.unet, w.vae, w.noise_scheduler
        self.v_prediction = w.prediction_type == 'v_prediction'
        self.noise_offset = w.noise_offset
        self._check_losses(model)
        self.weights = getattr(model, 'loss_weights', dict(task=1.0))
        self.pairs = list(getattr(model, 'pairs', []))
        self.normalize = getattr(model, 'normalize_features', False)
        self.teacher_dtype = getattr(model, 'teacher_dtype', None)
        # Its own feature hooks: plain dicts, registered once.
        self.feats = {'s': {}, 't': {}}
        self.handles = []
        s_mods = dict(self.unet.named_modules())
        t_mods = dict(self.teacher.named_modules()) if self.teacher else {}
        for s, t in self.pairs:
            self.handles.append(s_mods[s].register_forward_hook(
                self._keep('s', s)))
            self.handles.append(t_mods[t].register_forward_hook(
                self._keep('t', t)))
        ow = cfg.optim_wrapper
        opt = dict(ow.optimizer)
        opt_cls = getattr(torch.optim, opt.pop('type'))
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = opt_cls(self.params, **opt)
        self.clip = (ow.get('clip_grad') or {}).get('max_norm')
        if ow.get('accumulative_counts', 1) != 1:
            raise NotImplementedError('gradient accumulation')
        # the precision the engine's optimizer wrapper resolved
        self.autocast = cast_dtype
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if loss_scaling else None)
        g = torch.Generator().manual_seed(seed)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_size=cfg.train_dataloader.batch_size,
            shuffle=True, drop_last=True, generator=g,
            num_workers=cfg.train_dataloader.get('num_workers', 0),
            collate_fn=collate_fn)

    @staticmethod
    def _check_losses(model):
        for name in ('loss_module', 'task_loss', 'output_loss',
                     'feature_loss'):
            loss = getattr(model, name, None)
            if loss is not None and type(loss).__name__ != 'L2Loss':
                raise NotImplementedError(
                    f'the reference loop implements L2Loss only; {name} is '
                    f'{type(loss).__name__}')

    def _keep(self, side, name):
        def hook(module, args, out):
            self.feats[side][name] = out if torch.is_tensor(out) else out[0]
        return hook

    def batches(self):
        while True:
            yield from self.loader

    def inputs(self, batch) -> Dict:
        inputs = {}
        for k, v in batch['inputs'].items():
            if isinstance(v, (list, tuple)) and v and torch.is_tensor(v[0]):
                v = torch.stack(list(v))
            inputs[k] = v.to(self.device) if torch.is_tensor(v) else v
        if inputs.get('is_prior') is not None:
            raise NotImplementedError('DreamBooth prior preservation')
        return inputs

    def loss(self, inputs: Dict, timer: StageTimer) -> torch.Tensor:
        w = self.wrapper
        cfg = self.vae.config
        # 'encode': the encoders' forwards, timed by hooks as in the engine
        with torch.no_grad():
            if 'latent_mean' in inputs:
                mean = inputs['latent_mean'].float()
                lat = mean + inputs['latent_std'].float() * \
                    torch.randn_like(mean)
            else:
                with torch.autocast(self.device.type, enabled=False):
                    lat = self.vae.encode(inputs['img'].to(
                        self.vae.dtype)).latent_dist.sample()
            shift = getattr(cfg, 'shift_factor', None) or 0.0
            lat = (lat - shift) * cfg.scaling_factor
        noise = torch.randn_like(lat)
        if self.noise_offset:
            noise = noise + self.noise_offset * torch.randn(
                lat.shape[0], lat.shape[1], 1, 1, device=lat.device,
                dtype=lat.dtype)
        t = torch.randint(0, self.sched.config.num_train_timesteps,
                          (lat.shape[0], ), device=lat.device)
        noisy = self.sched.add_noise(lat, noise, t)
        target = (self.sched.get_velocity(lat, noise, t)
                  if self.v_prediction else noise)
        with torch.no_grad():
            if 'prompt_embeds' in inputs:
                hidden, added = w.cached_prompt(inputs)
            else:
                hidden, added = w.encode_prompt(list(inputs['text']), inputs)
        extra = dict(added_cond_kwargs=added) if added else {}
        loss = 0.0
        if self.teacher is not None and (self.weights['output'] or (
                self.weights['feature'] and self.pairs)):
            with timer.stage('teacher_forward'), torch.no_grad():
                dt = self.teacher_dtype or noisy.dtype
                t_extra = {k: {a: b.to(dt) for a, b in v.items()}
                           for k, v in extra.items()}
                t_pred = self.teacher(noisy.to(dt), t, hidden.to(dt),
                                      **t_extra).sample.float()
        s_pred = self.unet(noisy, t, hidden, **extra).sample
        loss = self.weights['task'] * F.mse_loss(s_pred.float(), target)
        if self.teacher is not None and self.weights['output']:
            loss = loss + self.weights['output'] * F.mse_loss(
                s_pred.float(), t_pred)
        if self.teacher is not None and self.weights['feature'] and \
                self.pairs:
            feat = 0.0
            for s, tn in self.pairs:
                ft = self.feats['t'][tn].detach().float()
                term = F.mse_loss(self.feats['s'][s].float(), ft)
                if self.normalize:
                    term = term / ft.pow(2).mean().clamp_min(1e-6)
                feat = feat + term
            loss = loss + self.weights['feature'] * feat
        self.feats = {'s': {}, 't': {}}
        return loss

    def step(self, inputs: Dict, timer: StageTimer):
        ctx = (torch.autocast(self.device.type, dtype=self.autocast)
               if self.autocast else torch.autocast(self.device.type,
                                                    enabled=False))
        with ctx:
            loss = self.loss(inputs, timer)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.clip:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        with timer.stage('optimizer'):
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
                self.scaler.update()
            else:
                self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def run(self, warmup: int, iters: int, timer: StageTimer,
            memory: PeakMemory) -> Dict:
        self.unet.train()
        self.handles += time_forwards(encoder_modules(self.wrapper), timer,
                                      'encode')
        batches = self.batches()
        end = timer.now()
        for i in range(warmup + iters):
            if i == warmup:
                timer.active = True
                release_freed_memory()
                memory.reset()
                end = timer.now()
            batch = next(batches)
            t0 = timer.now()
            timer.add('data', t0 - end)
            with timer.stage('train_step'):
                self.step(self.inputs(batch), timer)
            t1 = timer.now()
            timer.add('iteration', t1 - end)
            end = t1
        peak = memory.peak()
        timer.active = False
        return _summary(timer, iters, self.loader.batch_size, peak,
                        memory.start, memory.method)

    def close(self):
        for h in self.handles:
            h.remove()


def loss_parity(model, ref: ReferenceLoop, seed: int) -> Dict:
    """Both loops' loss on one batch with the same random draws."""
    batch = next(ref.batches())
    timer = StageTimer()
    with torch.no_grad():
        torch.manual_seed(seed)
        data = model.data_preprocessor(copy.copy(batch), True)
        engine = sum(v for k, v in model(data['inputs'],
                                         mode='loss').items()
                     if 'loss' in k)
        torch.manual_seed(seed)
        mine = ref.loss(ref.inputs(batch), timer)
    engine, mine = float(engine), float(mine)
    return dict(engine=engine, reference=mine, abs_diff=abs(engine - mine))


# ----------------------------------------------------------------- run
def prepare_config(config: str, work_dir: str,
                   cfg_options: Optional[dict] = None, amp: bool = False,
                   random_weights: bool = False,
                   toy_data: Optional[int] = None,
                   weights_dir: Optional[str] = None,
                   log: Callable[[str], None] = _stderr):
    """The config :func:`benchmark_train` runs, and the published names it
    replaced by random weights (see there)."""
    cfg = train_config(config, work_dir, cfg_options, amp=amp)
    randomised = (use_random_weights(
        cfg, weights_dir or osp.join(work_dir, 'random_weights'), log,
        reuse=weights_dir is not None) if random_weights else {})
    if toy_data:
        use_toy_data(cfg, toy_data)
    return cfg, randomised


def benchmark_train(config: str,
                    iters: int = 20,
                    warmup: int = 3,
                    reference: bool = False,
                    repeat: int = 1,
                    amp: bool = False,
                    random_weights: bool = False,
                    toy_data: Optional[int] = None,
                    cfg_options: Optional[dict] = None,
                    weights_dir: Optional[str] = None,
                    log: Callable[[str], None] = _stderr) -> Dict:
    """The benchmark's result (docs/performance.md): machine, settings,
    ``engine`` timings and, with ``reference``, ``reference``,
    ``loss_parity`` and engine/reference ``ratio``. With ``repeat`` > 1
    engine and reference runs alternate and each field is the median.
    Runner logs go to stderr. ``random_weights``: published models the
    config names get their architecture with random weights (offline);
    ``toy_data``: train on the toy captioned shapes at that many pixels;
    ``weights_dir``: keep the random-weight copies there, and reuse those
    an earlier call left (default: a temporary folder, removed)."""
    work_dir = tempfile.mkdtemp(prefix='benchmark_train-')
    try:
        cfg, randomised = prepare_config(config, work_dir, cfg_options, amp,
                                         random_weights, toy_data,
                                         weights_dir, log)
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        load = os.getloadavg()[0]  # other work on the machine skews times
        runs = []
        for k in range(repeat):
            # Engine and reference alternate: a machine that speeds up or
            # slows down during the benchmark skews both alike.
            log(f'benchmark: engine, {warmup} + {iters} iterations'
                f' (run {k + 1} of {repeat})')
            runs.append(_engine_and_reference(
                copy.deepcopy(cfg), warmup, iters, reference, device, log))
        first = runs[0]
        result = dict(
            config=config, device=device,
            device_name=(torch.cuda.get_device_name()
                         if device == 'cuda' else platform.processor()
                         or platform.machine()),
            cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
            load_avg_1m=load,
            torch=torch.__version__, batch_size=cfg.train_dataloader
            .batch_size, iters=iters, warmup=warmup,
            repeat=repeat, amp=amp,
            random_weights=sorted(randomised), toy_data=toy_data,
            feature_pairs=first['feature_pairs'],
            unet_params=first['unet_params'],
            engine=_median_of([r['engine'] for r in runs]))
        if reference:
            result['reference'] = _median_of([r['reference'] for r in runs])
            result['loss_parity'] = max((r['loss_parity'] for r in runs),
                                        key=lambda p: p['abs_diff'])
            result['ratio'] = _median_of([r['ratio'] for r in runs])
        if repeat > 1:
            result['repeats'] = [
                {k: r[k] for k in ('engine', 'reference', 'ratio') if k in r}
                for r in runs]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return result


def _engine_and_reference(cfg, warmup: int, iters: int, reference: bool,
                          device: str, log) -> Dict:
    """One engine run, then (with ``reference``) one reference run."""
    timer, memory = StageTimer(device), PeakMemory(device)
    # Logs go to stderr: stdout is the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        runner, engine, start_weights = run_engine(
            cfg, warmup, iters, timer, memory, keep_start_weights=reference)
    model = getattr(runner.model, 'module', runner.model)
    pairs = getattr(model, 'pairs', None)
    wrapper, teacher = _parts(model)
    out = dict(engine=engine,
               feature_pairs=None if pairs is None else len(pairs),
               unet_params=dict(student=_numel(wrapper.unet),
                                teacher=_numel(teacher) if teacher else None))
    if reference:
        with contextlib.redirect_stdout(sys.stderr):
            out.update(_reference(runner, cfg, warmup, iters, device,
                                  engine, start_weights, log))
    del runner, model, wrapper, teacher
    release_freed_memory()
    return out


def _median_of(results: List[Dict]) -> Dict:
    """Field-wise median of equally shaped result dicts."""
    first = results[0]
    if len(results) == 1:
        return first
    out = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = _median_of([r[key] for r in results])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            vals = [r[key] for r in results if r[key] is not None]
            out[key] = statistics.median(vals) if vals else None
        else:
            out[key] = value
    return out


def _reference(runner, cfg, warmup: int, iters: int, device: str,
               engine: Dict, start_weights: Dict, log) -> Dict:
    model = runner.model
    # The engine's optimizer state and feature hooks go, and the trained
    # weights go back to where the engine started.
    runner.optim_wrapper.optimizer.state.clear()
    runner.optim_wrapper.zero_grad(set_to_none=True)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name in start_weights:
                p.copy_(start_weights[name])
    seed = cfg.get('randomness', {}).get('seed', 0) or 0
    wrapper = runner.optim_wrapper
    ref = ReferenceLoop(model, cfg, runner.train_dataloader.dataset,
                        runner.train_dataloader.collate_fn, seed,
                        getattr(wrapper, 'cast_dtype', None),
                        getattr(wrapper, 'loss_scaler', None) is not None)
    runner.optim_wrapper = None
    parity = loss_parity(model, ref, seed)
    for rec in ('student_recorder', 'teacher_recorder'):
        if hasattr(model, rec):  # the reference has hooks of its own
            getattr(model, rec).remove()
    log(f'benchmark: reference loop, {warmup} + {iters} iterations')
    timer, memory = StageTimer(device), PeakMemory(device)
    torch.manual_seed(seed)
    reference = ref.run(warmup, iters, timer, memory)
    ref.close()
    return dict(
        reference=reference, loss_parity=parity,
        ratio={k: engine[key] / reference[key] if reference[key] else None
               for k, key in (('time', 's_per_iter'),
                              ('time_median', 's_per_iter_median'),
                              ('peak_mem', 'peak_mem_bytes'),
                              ('working_mem', 'working_mem_bytes'))})
