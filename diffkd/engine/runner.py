"""diffkd's runners: mmengine's ``Runner`` and ``FlexibleRunner`` that load
checkpoints as data.

Configs are code and trusted; checkpoints are untrusted data. Every
checkpoint a run loads (``--resume PATH``, auto-resume, ``load_from``) is
read by :func:`read_checkpoint`, and only there: weights only, and the
config a file may carry (``meta['config']``, which mmengine 0.10's
``resume`` passes to ``Config.fromstring``, i.e. executes) is dropped
unread. Selected by ``runner_type`` in ``configs/_base_/default_runtime.py``
(``DiffusionRunner``) and in the FSDP/DeepSpeed strategy configs
(``DiffusionFlexibleRunner``).

Resuming also:

* refuses an auto-resume (``--resume`` without a path) when the work dir
  holds no complete checkpoint, instead of training from scratch;
* finds a checkpoint whose work dir was moved (``last_checkpoint`` holds an
  absolute path) in the work dir itself;
* compares the checkpoint's weights with the model, names and shapes,
  before anything is loaded, so another model's checkpoint is named as such
  rather than failing in the optimizer.

``load_from`` (weights only) reports missing *trainable* weights; frozen
parts (teacher, VAE, text encoders) are left out of checkpoints by design.
The message hub is saved as plain data (:func:`~diffkd.engine.checkpoint.
message_hub_to_plain`), so no mmengine class needs to be unpickled.

Both runners also

* shield the workers of every dataloader they build from a signal sent to
  the whole process group (:class:`~diffkd.engine.hooks.
  SignalCheckpointHook`), before the loop starts them;
* call ``before_save_checkpoint_all_ranks`` on every rank before a
  checkpoint is saved: mmengine calls ``before_save_checkpoint`` on rank 0
  alone, and a hook that gathers from every rank (the random states,
  :class:`~diffkd.engine.hooks.RandomStateHook`) needs all of them.
"""
import logging
import os
import os.path as osp
import pickle
import re
from collections import OrderedDict
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

from mmengine._strategy import SingleDeviceStrategy
from mmengine.device import get_device
from mmengine.dist import get_rank
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import FlexibleRunner, Runner

from diffkd.registry import RUNNERS
from .checkpoint import (message_hub_from_plain, message_hub_to_plain,
                         safe_torch_load, state_layout)
from .distributed import is_fsdp
from .hooks.checkpoint_hook import (LAST_CHECKPOINT, TMP_PREFIX,
                                    read_last_checkpoint)
from .hooks.signal_hook import SignalCheckpointHook

Layout = Tuple[Dict[str, tuple], Dict[str, tuple]]
SHOWN = 3  # keys named per kind of mismatch


class NoCheckpointError(FileNotFoundError):
    """Auto-resume found no complete checkpoint in the work dir."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's weights do not fit the model of the config."""


# --------------------------------------------------------------- reading
def checkpoint_as_data(checkpoint: dict, filename: str) -> dict:
    """Drop a config the checkpoint carries (never executed: the run's own
    config rules) and rebuild the message hub from plain data."""
    meta = checkpoint.get('meta')
    if isinstance(meta, dict) and 'config' in meta:
        del meta['config']
        print_log(
            f"{filename}: meta['config'] ignored (a checkpoint's config is "
            "never executed; this run's config is used)", logger='current',
            level=logging.WARNING)
    if isinstance(checkpoint.get('message_hub'), dict):
        checkpoint['message_hub'] = message_hub_from_plain(
            checkpoint['message_hub'])
    return checkpoint


def read_checkpoint(filename: str, map_location=None) -> dict:
    """The one place diffkd reads a checkpoint: weights only, because a
    checkpoint is untrusted data (tensors and training state come back;
    anything else is refused, nothing is executed)."""
    checkpoint = safe_torch_load(filename, map_location)
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(
            f'{filename} holds a {type(checkpoint).__name__}, not a '
            'checkpoint (a dict with state_dict, meta, ...)')
    return checkpoint_as_data(checkpoint, filename)


def latest_checkpoint(work_dir: str, log: bool = True) -> str:
    """The checkpoint that ``work_dir/last_checkpoint`` names or, when that
    path is gone (the work dir was moved), the file of that name in
    ``work_dir``. :class:`NoCheckpointError` when there is none."""
    named = read_last_checkpoint(work_dir) if osp.isdir(work_dir) else None
    if named is not None:
        if osp.exists(named):
            return named
        moved = osp.join(work_dir, osp.basename(named))
        if osp.exists(moved):
            if log:
                print_log(
                    f'{LAST_CHECKPOINT} names {named}, which does not exist; '
                    f'resuming from {moved} (the work dir was moved)',
                    logger='current', level=logging.WARNING)
            return moved
        reason = (f'{LAST_CHECKPOINT} names {named}, which does not exist, '
                  f'nor does {moved}')
    elif not osp.isdir(work_dir):
        reason = 'the folder does not exist'
    else:
        reason = f'it has no {LAST_CHECKPOINT}'
        partial = sorted(n for n in os.listdir(work_dir)
                         if n.startswith(TMP_PREFIX))
        if partial:
            reason += (f'; {", ".join(partial)} was left by a run stopped '
                       'while writing its checkpoint')
    raise NoCheckpointError(
        f'cannot resume: no complete checkpoint in {work_dir} ({reason}). '
        'To start over, run without --resume; to resume from a checkpoint '
        'file, pass it: --resume PATH')


# -------------------------------------------------------------- checking
def _names(keys: List[str]) -> str:
    more = f' (and {len(keys) - SHOWN} more)' if len(keys) > SHOWN else ''
    return ', '.join(keys[:SHOWN]) + more


def check_fit(state: dict, layout: Layout, filename: str, config: str,
              strict: bool) -> Tuple[List[str], List[str]]:
    """Compare a checkpoint's weights with the model before loading any.

    A shape that differs is an error; with ``strict`` (resuming) so is a
    missing or an extra weight, as the optimizer state would not fit.
    Returns (trainable weights missing from the checkpoint, weights the
    model does not have) for a weights-only load to report.
    """
    saved, known = layout
    wrong = [f'{k} is {tuple(v.shape)} in the checkpoint, {known[k]} in '
             'the model' for k, v in state.items()
             if k in known and hasattr(v, 'shape')
             and tuple(v.shape) != known[k]]
    missing = [k for k in saved if k not in state]
    extra = [k for k in state if k not in (saved if strict else known)]
    problems = []
    if wrong:
        problems.append(f'shapes differ: {_names(wrong)}')
    if strict and missing:
        problems.append(f'missing from the checkpoint: {_names(missing)}')
    if strict and extra:
        problems.append(f'not in the model: {_names(extra)}')
    if problems:
        raise CheckpointMismatchError(
            f'checkpoint {filename} does not fit the model of {config} '
            f'(the checkpoint holds {len(state)} weights, the model saves '
            f'{len(saved)}): {"; ".join(problems)}. Resume a checkpoint '
            'with the config that wrote it, or train this config in a new '
            'work dir.')
    return missing, extra


def _revised(checkpoint: dict, revise_keys) -> OrderedDict:
    state = checkpoint['state_dict'] if 'state_dict' in checkpoint \
        else checkpoint
    metadata = getattr(state, '_metadata', None)
    for pattern, replacement in revise_keys:
        state = OrderedDict(
            (re.sub(pattern, replacement, k), v) for k, v in state.items())
    if metadata is not None:
        state._metadata = metadata
    return state


class _DiffusionRunnerParts:
    """What :class:`DiffusionRunner` and :class:`DiffusionFlexibleRunner`
    share: resume resolution, the weights check, the save format and the
    dataloaders' workers."""

    _diffkd_strict = False  # True while resuming

    @classmethod
    def from_cfg(cls, cfg):
        if cfg.get('resume') is True and cfg.get('load_from') is None:
            # Refuse before the models are built (minutes for real ones).
            latest_checkpoint(osp.abspath(cfg.work_dir), log=False)
        return super().from_cfg(cfg)

    def load_or_resume(self) -> None:
        if self._has_loaded:
            return
        resume_from = None
        if isinstance(self._resume, str):  # FlexibleRunner(resume=PATH)
            resume_from = self._resume
        elif self._resume and self._load_from is None:
            resume_from = latest_checkpoint(self.work_dir)
            self.logger.info(
                f'Auto resumed from the latest checkpoint {resume_from}.')
        elif self._resume:
            resume_from = self._load_from
        if resume_from is not None:
            self.resume(resume_from)
        elif self._load_from is not None:
            self.load_checkpoint(self._load_from)
        else:
            return
        self._has_loaded = True

    def build_dataloader(self, dataloader, seed: int = 0,
                         diff_rank_seed: bool = False):
        """mmengine's (its loops call it), then the workers are shielded:
        they start when the loop is built, before any hook runs."""
        loader = super().build_dataloader(
            dataloader, seed=seed, diff_rank_seed=diff_rank_seed)
        for hook in self.hooks:
            if isinstance(hook, SignalCheckpointHook):
                hook.shield_workers(loader)
        return loader

    def save_checkpoint(self, *args, **kwargs):
        self.call_hook('before_save_checkpoint_all_ranks')
        return super().save_checkpoint(*args, **kwargs)

    def call_hook(self, fn_name: str, **kwargs) -> None:
        super().call_hook(fn_name, **kwargs)
        if fn_name == 'before_save_checkpoint':
            # After every hook (one may replace the hub's copy): what the
            # file holds is plain data a weights-only load accepts.
            checkpoint = kwargs['checkpoint']
            if isinstance(checkpoint.get('message_hub'), dict):
                checkpoint['message_hub'] = message_hub_to_plain(
                    checkpoint['message_hub'])

    @contextmanager
    def _resuming(self):
        self._diffkd_strict = True
        try:
            yield
        finally:
            self._diffkd_strict = False

    def _checked_state(self, checkpoint: dict, filename: str, revise_keys,
                       layout: Optional[Layout], strict: bool) -> OrderedDict:
        state = _revised(checkpoint, revise_keys)
        if layout is None:  # e.g. a sharded FSDP state dict
            return state
        config = getattr(self.cfg, 'filename', None) or 'this config'
        missing, extra = check_fit(state, layout, filename, config,
                                   strict or self._diffkd_strict)
        if missing:
            self.logger.warning(
                f'{filename} lacks {len(missing)} trainable weight(s), left '
                f'as initialised: {_names(missing)}')
        if extra:
            self.logger.warning(
                f'{filename} holds {len(extra)} weight(s) the model does '
                f'not have, ignored: {_names(extra)}')
        return state


@RUNNERS.register_module()
class DiffusionRunner(_DiffusionRunnerParts, Runner):
    """mmengine's ``Runner`` that reads checkpoints as data (see the
    module docstring); everything else is mmengine's."""

    @classmethod
    def from_cfg(cls, cfg):
        if cfg.get('strategy') is not None:
            # mmengine's Runner would ignore it and train unsharded.
            raise ValueError(
                f'{getattr(cfg, "filename", None) or "the config"} sets a '
                f'strategy ({cfg.strategy.get("type")}), which only '
                "DiffusionFlexibleRunner runs: add runner_type = "
                "'DiffusionFlexibleRunner' to it")
        return super().from_cfg(cfg)

    def resume(self, filename: str, *args, **kwargs) -> None:
        with self._resuming():
            super().resume(filename, *args, **kwargs)

    def load_checkpoint(self, filename: str, map_location='cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):
        checkpoint = read_checkpoint(filename, map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) \
            else self.model
        state = self._checked_state(checkpoint, filename, revise_keys,
                                    state_layout(model), strict)
        # Checked above; torch's own report would list every frozen weight.
        model.load_state_dict(state, strict=False)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint


@RUNNERS.register_module()
class DiffusionFlexibleRunner(_DiffusionRunnerParts, FlexibleRunner):
    """mmengine's ``FlexibleRunner`` (FSDP, DeepSpeed strategies) that reads
    checkpoints as data. Strategies that keep a checkpoint in one file per
    run or per rank (DDP, FSDP) are loaded through :func:`read_checkpoint`;
    DeepSpeed reads its checkpoint folder with its own engine, and its
    embedded config is dropped all the same."""

    def _layout(self) -> Optional[Layout]:
        model = self.strategy.model
        layout = getattr(model, 'diffkd_state_layout', None)
        if layout is not None or is_fsdp(model):
            return layout  # recorded by DiffusionFSDP before sharding
        return state_layout(model.module if is_model_wrapper(model)
                            else model)

    def load_checkpoint(self, filename: str, map_location='cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):
        strategy = self.strategy
        if not isinstance(strategy, SingleDeviceStrategy):
            return super().load_checkpoint(
                filename, map_location=map_location, strict=strict,
                revise_keys=revise_keys)
        self.logger.info(f'Load checkpoint from {filename}')
        if map_location == 'default':
            map_location = get_device()
        path, layout = filename, self._layout()
        is_full = getattr(strategy, '_is_full_state_dict', None)
        if is_full is not None and not is_full():
            path, layout = osp.join(filename, f'rank{get_rank()}.pth'), None
        checkpoint = read_checkpoint(path, map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        state = self._checked_state(checkpoint, path, revise_keys, layout,
                                    strict)
        checkpoint.pop('state_dict', None)
        if is_fsdp(strategy.model):  # FSDP puts whole weights in shards
            strategy.load_model_state_dict(state, strict=False)
        else:
            model = strategy.model
            (model.module if is_model_wrapper(model) else model)\
                .load_state_dict(state, strict=False)
        return checkpoint

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location='default') -> None:
        strategy = self.strategy
        if isinstance(strategy, SingleDeviceStrategy):
            self.logger.info(f'Resume checkpoint from {filename}')
            with self._resuming():
                checkpoint = self.load_checkpoint(
                    filename, map_location=map_location)
            # The rest of SingleDeviceStrategy.resume, after the load.
            if resume_optimizer:
                strategy.load_optim_state_dict(checkpoint.pop('optimizer'))
            if resume_param_scheduler and hasattr(strategy,
                                                  'param_schedulers'):
                strategy.load_scheduler_state_dict(
                    checkpoint.pop('param_schedulers'))
            self._resume_seed_and_counts(checkpoint)
        else:
            checkpoint = checkpoint_as_data(strategy.resume(
                filename,
                resume_optimizer=resume_optimizer,
                resume_param_scheduler=resume_param_scheduler,
                map_location=map_location,
                callback=lambda c: self.call_hook(
                    'after_load_checkpoint', checkpoint=c)), filename)

        self.train_loop._epoch = checkpoint['meta']['epoch']
        self.train_loop._iter = checkpoint['meta']['iter']
        dataset_meta = getattr(self.train_dataloader.dataset, 'metainfo',
                               None)
        # compared pickled, as mmengine does (metainfo may hold arrays)
        if pickle.dumps(checkpoint['meta'].get('dataset_meta')) != \
                pickle.dumps(dataset_meta):
            self.logger.warning(
                'The dataset metainfo from the resumed checkpoint is '
                'different from the current training dataset.')
        self.message_hub.load_state_dict(checkpoint['message_hub'])
        self.logger.info(f'resumed epoch: {self.epoch}, iter: {self.iter}')

    def _resume_seed_and_counts(self, checkpoint: dict) -> None:
        # As mmengine's SingleDeviceStrategy.resume does.
        strategy = self.strategy
        resumed_seed = checkpoint['meta'].get('seed', None)
        current_seed = strategy._randomness.get('seed')
        if resumed_seed is not None and resumed_seed != current_seed:
            if current_seed is not None:
                self.logger.warning(
                    f'The value of random seed in the checkpoint '
                    f'"{resumed_seed}" is different from the value in '
                    f'`randomness` config "{current_seed}"')
            strategy._randomness.update(seed=resumed_seed)
            strategy._set_randomness(**strategy._randomness)
        counts = getattr(strategy.optim_wrapper, '_accumulative_counts', 1)
        if counts > 1:
            if 'max_iters' not in strategy.dispatch_kwargs:
                raise ValueError(
                    '"max_iters" must be specified because '
                    f'"accumulative_counts" was set as {counts}')
            strategy.optim_wrapper.initialize_count_status(
                strategy.model, checkpoint['meta']['iter'],
                strategy.dispatch_kwargs['max_iters'])
