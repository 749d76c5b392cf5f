"""Training speed of a config, optionally against a bare PyTorch loop.

``python tools/analysis_tools/benchmark_train.py CONFIG --iters N
[--warmup W] [--reference] [--repeat K] [--amp] [--random-weights]
[--toy-data PX]
[--cfg-options ...] [--out FILE]``

Runs W + N iterations of the config with the mmengine Runner exactly as
``tools/train.py`` would (same hooks, logging, optimizer wrapper) and times
the last N: seconds per iteration, images per second, peak memory and the
split into data, encoders (VAE + text), teacher forward, student forward +
backward, optimizer step and what the engine adds around them.

``--reference`` then runs, in the same process, a loop written in plain
PyTorch (no Runner, hooks or registries) doing the same math on the same
modules, batch size, dtype and seed, and reports engine/reference ratios.
Before timing, one batch is scored by both and the losses are compared, so
the two loops are known to compute the same thing. Prints JSON.

``--random-weights`` replaces every published model the config names by
its architecture with random weights (written to a temporary folder and
loaded through ``from_pretrained``), and ``--toy-data PX`` trains on the
toy captioned shapes at PX pixels: the real configs then run offline.
"""
import argparse
import contextlib
import copy
import importlib.util
import json
import os
import os.path as osp
import platform
import shutil
import statistics
import sys
import tempfile
from typing import Dict, List

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

from diffkd.models.compression.teacher_configs import KNOWN_TEACHERS
from diffkd.models.diffusion.random_init import save_random_pipeline
from diffkd.registry import RUNNERS
from diffkd.utils.profiling import PeakMemory, StageTimer, release_freed_memory

TOOLS = osp.dirname(osp.dirname(osp.abspath(__file__)))
STAGES = ('data', 'encode', 'teacher_forward', 'student_forward_backward',
          'optimizer', 'engine_other')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('--iters', type=int, default=20,
                        help='timed iterations')
    parser.add_argument('--warmup', type=int, default=3,
                        help='untimed iterations first')
    parser.add_argument('--reference', action='store_true',
                        help='also time a bare PyTorch loop doing the same')
    parser.add_argument('--repeat', type=int, default=1,
                        help='alternate engine and reference runs this '
                        'many times; report medians')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision, as tools/train.py --amp')
    parser.add_argument('--random-weights', action='store_true',
                        help='published models the config names get their '
                        'real architecture with random weights (offline)')
    parser.add_argument('--toy-data', type=int, metavar='PX',
                        help='train on the toy captioned shapes at PX '
                        'pixels instead of the config\'s dataset')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='override config keys, e.g. '
                        'train_dataloader.batch_size=8')
    parser.add_argument('--out', help='also write the JSON here')
    return parser.parse_args(argv)


def _train_module():
    spec = importlib.util.spec_from_file_location(
        'diffkd_train_tool', osp.join(TOOLS, 'train.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _published_names(node) -> List[str]:
    """Known hub ids named anywhere in a config, not found locally."""
    if isinstance(node, dict):
        return [n for v in node.values() for n in _published_names(v)]
    if isinstance(node, (list, tuple)):
        return [n for v in node for n in _published_names(v)]
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


def use_random_weights(cfg, folder: str) -> Dict[str, str]:
    """Point the config's published models at random-weight copies of
    their architecture written under ``folder``; returns name -> copy."""
    names = sorted(set(_published_names(cfg._cfg_dict.to_dict())))
    if not names:
        raise SystemExit(f'--random-weights: the config names no published '
                         f'model ({sorted(KNOWN_TEACHERS)}) missing locally')
    folders = {}
    for name in names:
        print(f'benchmark: {name} -> random weights', file=sys.stderr)
        folders[name] = save_random_pipeline(
            name, osp.join(folder, name.replace('/', '--')))
        release_freed_memory()
    for key in ('model', 'train_dataloader'):
        cfg[key] = _replace_names(cfg[key], folders)
    return folders


def use_toy_data(cfg, size: int):
    """Train on the toy captioned shapes, resized and cropped to size."""
    toy = Config.fromfile(
        osp.join(osp.dirname(TOOLS), 'configs', '_base_', 'datasets',
                 'toy_shapes.py')).toy.train_dataloader.dataset
    for step in toy.pipeline:
        if step.type in ('ResizeShortEdge', 'RandomCropWithCoords',
                         'CenterCropWithCoords'):
            step.size = size
    cfg.train_dataloader.dataset = toy
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.pop('persistent_workers', None)


def _numel(module) -> int:
    return sum(p.numel() for p in module.parameters())


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _parts(model):
    """(diffusion wrapper, teacher or None) of a built model."""
    if hasattr(model, 'student') and hasattr(model, 'teacher'):
        return model.student, model.teacher
    return model, None


class _Timing(Hook):
    """Marks iteration boundaries; starts the clock after the warm-up."""

    def __init__(self, timer: StageTimer, memory: PeakMemory, warmup: int,
                 edge: str):
        self.timer, self.memory, self.warmup = timer, memory, warmup
        self.edge = edge
        self.marks: Dict[str, float] = {}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self.edge == 'start':
            t = self.timer.now()
            if 'end' in self.marks:
                self.timer.add('data', t - self.marks['end'])
            self.marks['start'] = t

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if self.edge != 'end':
            return
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


def _instrument(model, optimizer, timer: StageTimer) -> List:
    """Attach stage timers to a built model; returns undo callables."""
    wrapper, teacher = _parts(model)
    undo = []
    for name in ('encode_images', 'encode_prompt'):
        fn = getattr(wrapper, name)

        def timed(*a, _fn=fn, **k):
            with timer.stage('encode'):
                return _fn(*a, **k)

        setattr(wrapper, name, timed)
        undo.append(lambda n=name: delattr(wrapper, n))
    step = model.train_step

    def train_step(*a, **k):
        with timer.stage('train_step'):
            return step(*a, **k)

    model.train_step = train_step
    undo.append(lambda: delattr(model, 'train_step'))
    handles = []
    marks = {}
    if teacher is not None:
        handles += [
            teacher.register_forward_pre_hook(
                lambda *_: marks.__setitem__('t', timer.now())),
            teacher.register_forward_hook(lambda *_: timer.add(
                'teacher_forward', timer.now() - marks['t']))
        ]
    handles += [
        optimizer.register_step_pre_hook(
            lambda *_: marks.__setitem__('o', timer.now())),
        optimizer.register_step_post_hook(
            lambda *_: timer.add('optimizer', timer.now() - marks['o']))
    ]
    undo += [h.remove for h in handles]
    return undo


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


# ---------------------------------------------------------------- engine
def run_engine(cfg, args, timer: StageTimer, memory: PeakMemory):
    total = args.warmup + args.iters
    # One iteration more than timed: the end-of-run checkpoint, export and
    # samples happen after the timed window (a run pays them once, not
    # once per `iters` iterations).
    cfg.train_cfg.max_iters = total + 1
    # the runner tools/train.py builds (the config's runner_type)
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg \
        else Runner.from_cfg(cfg)
    start = _Timing(timer, memory, args.warmup, 'start')
    end = _Timing(timer, memory, args.warmup, 'end')
    start.marks = end.marks
    runner.register_hook(start, priority='HIGHEST')
    runner.register_hook(end, priority='LOWEST')

    class _Attach(Hook):
        def before_train(self, r):
            self.undo = _instrument(r.model, r.optim_wrapper.optimizer,
                                    timer)
            # For the reference loop to start from the same weights.
            self.start_weights = {
                n: p.detach().to('cpu', copy=True)
                for n, p in r.model.named_parameters() if p.requires_grad
            } if args.reference else {}

    attach = _Attach()
    runner.register_hook(attach, priority='LOWEST')
    runner.train()
    for fn in attach.undo:
        fn()
    result = _summary(timer, args.iters, cfg.train_dataloader.batch_size,
                      end.marks['peak'], memory.start, memory.method)
    return runner, result, attach


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
        with timer.stage('encode'), torch.no_grad():
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
        with timer.stage('encode'), torch.no_grad():
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


def main(argv=None):
    args = parse_args(argv)
    train = _train_module()
    work_dir = tempfile.mkdtemp(prefix='benchmark_train-')
    targv = [args.config, '--work-dir', work_dir]
    if args.amp:
        targv.append('--amp')
    if args.cfg_options:
        targv += ['--cfg-options', *args.cfg_options]
    try:
        cfg = train.build_config(train.parse_args(targv))
        randomised = (use_random_weights(
            cfg, osp.join(work_dir, 'random_weights'))
                      if args.random_weights else {})
        if args.toy_data:
            use_toy_data(cfg, args.toy_data)
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
        load = os.getloadavg()[0]  # other work on the machine skews times
        runs = []
        for k in range(args.repeat):
            # Engine and reference alternate: a machine that speeds up or
            # slows down during the benchmark skews both alike.
            runs.append(_engine_and_reference(copy.deepcopy(cfg), args,
                                              device, k))
        first = runs[0]
        result = dict(
            config=args.config, device=device,
            device_name=(torch.cuda.get_device_name()
                         if device == 'cuda' else platform.processor()
                         or platform.machine()),
            cpu_count=os.cpu_count(), torch_threads=torch.get_num_threads(),
            load_avg_1m=load,
            torch=torch.__version__, batch_size=cfg.train_dataloader
            .batch_size, iters=args.iters, warmup=args.warmup,
            repeat=args.repeat, amp=args.amp,
            random_weights=sorted(randomised), toy_data=args.toy_data,
            feature_pairs=first['feature_pairs'],
            unet_params=first['unet_params'],
            engine=_median_of([r['engine'] for r in runs]))
        if args.reference:
            result['reference'] = _median_of([r['reference'] for r in runs])
            result['loss_parity'] = max((r['loss_parity'] for r in runs),
                                        key=lambda p: p['abs_diff'])
            result['ratio'] = _median_of([r['ratio'] for r in runs])
        if args.repeat > 1:
            result['repeats'] = [
                {k: r[k] for k in ('engine', 'reference', 'ratio') if k in r}
                for r in runs]
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text + '\n')
    return result


def _engine_and_reference(cfg, args, device: str, k: int) -> Dict:
    """One engine run, then (with --reference) one reference run."""
    timer, memory = StageTimer(device), PeakMemory(device)
    print(f'benchmark: engine, {args.warmup} + {args.iters} iterations'
          f' (run {k + 1} of {args.repeat})', file=sys.stderr)
    # Logs go to stderr: stdout is the JSON.
    with contextlib.redirect_stdout(sys.stderr):
        runner, engine, attach = run_engine(cfg, args, timer, memory)
    model = getattr(runner.model, 'module', runner.model)
    pairs = getattr(model, 'pairs', None)
    wrapper, teacher = _parts(model)
    out = dict(engine=engine,
               feature_pairs=None if pairs is None else len(pairs),
               unet_params=dict(student=_numel(wrapper.unet),
                                teacher=_numel(teacher) if teacher else None))
    if args.reference:
        with contextlib.redirect_stdout(sys.stderr):
            out.update(_reference(runner, cfg, args, device, engine,
                                  attach.start_weights))
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


def _reference(runner, cfg, args, device, engine: Dict,
               start_weights: Dict) -> Dict:
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
    print(f'benchmark: reference loop, {args.warmup} + {args.iters} '
          'iterations', file=sys.stderr)
    timer, memory = StageTimer(device), PeakMemory(device)
    torch.manual_seed(seed)
    reference = ref.run(args.warmup, args.iters, timer, memory)
    ref.close()
    return dict(
        reference=reference, loss_parity=parity,
        ratio={k: engine[key] / reference[key] if reference[key] else None
               for k, key in (('time', 's_per_iter'),
                              ('time_median', 's_per_iter_median'),
                              ('peak_mem', 'peak_mem_bytes'),
                              ('working_mem', 'working_mem_bytes'))})


if __name__ == '__main__':
    main()
