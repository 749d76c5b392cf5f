"""Data parallel training on CPUs (gloo): 2 processes against 1.

The runs use the toy SSD-1B distillation with ``SameNoiseSDXL``
(tests/test_reliability/probes.py): each sample's latent, noise and
timestep follow from the sample itself, and the data pipeline has no
random flips or caption drops. InfiniteSampler gives rank r the samples
r, r+2, ... of the one-process order, so with per-rank batch B against a
batch of 2B every iteration sees the same samples with the same noise, and
the averaged DDP gradient equals the one-process gradient up to float
rounding. The final UNets are compared as

    rel = ||w_2proc - w_1proc|| / ||w_1proc - w_init||

(over all weights): measured ~1e-4, tolerance 1e-3. A run without gradient
averaging (one rank's half batch) measures rel ~0.7.
"""
import glob
import json
import os.path as osp
import types

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import REPO, run_config
from tests.test_reliability.conftest import (dist_train, one_thread, tail,
                                             torchrun)

B = 2  # per-rank batch; the single process gets 2 * B
ITERS = 4
TOLERANCE = 1e-3

PIPELINE = """[
    dict(type='ResizeShortEdge', size=32),
    dict(type='RandomCropWithCoords', size=32),
    dict(type='ComputeTimeIds'), dict(type='NormalizeRGB'),
    dict(type='PackInputs', keys=['img', 'text', 'time_ids'])]"""


def same_noise_config(path, data, base='ssd_1b_distill_toy.py'):
    path.write_text(f"""
_base_ = '{osp.join(REPO, 'configs', 'toy', base)}'
custom_imports = dict(imports=['tests.test_reliability.probes'],
                      allow_failed_imports=False)
model = dict(teacher=dict(model='diffkd-toy/sdxl'),
             student=dict(type='SameNoiseSDXL', model='diffkd-toy/sdxl'))
train_dataloader = dict(batch_size={B},
                        dataset=dict(_delete_=True, type='HFImageTextDataset',
                                     dataset='{data}', pipeline={PIPELINE}))
custom_hooks = [dict(type='DiffusersExportHook'), dict(type='RankProbeHook')]
train_cfg = dict(max_iters={ITERS})
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1000))
""")
    return str(path)


def unet(work):
    return load_file(osp.join(work, 'final', 'unet',
                              'diffusion_pytorch_model.safetensors'))


def relative_difference(work, reference):
    a, b = unet(work), unet(reference)
    init = torch.load(osp.join(reference, 'init_unet.pt'))
    diff = sum(((a[k].double() - b[k].double())**2).sum() for k in b)
    moved = sum(((b[k].double() - init[k].double())**2).sum() for k in b)
    assert moved > 0, 'training did not change the weights'
    return float((diff / moved)**0.5)


def final_val_loss(work):
    """The held-out losses of the run's last validation (at its end)."""
    path = sorted(glob.glob(osp.join(work, '*', 'vis_data',
                                     'scalars.json')))[-1]
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return {k: v for k, v in [r for r in rows if 'val/loss' in r][-1].items()
            if k.startswith('val/')}


def probe(work, rank):
    with open(osp.join(work, f'probe_rank{rank}.json')) as f:
        return json.load(f)


@pytest.fixture(scope='module')
def one_process(tmp_path_factory, toy_sdxl, small_shapes):
    tmp = tmp_path_factory.mktemp('one_process')
    cfg = same_noise_config(tmp / 'cfg.py', small_shapes)
    with one_thread():
        run_config(cfg, tmp / 'work', f'train_dataloader.batch_size={2 * B}')
    return cfg, str(tmp / 'work'), small_shapes


@pytest.mark.scenario
def test_ddp_two_processes_match_one_process(one_process, tmp_path):
    cfg, reference, _ = one_process
    work = tmp_path / 'ddp'
    # tools/dist_train.sh: torchrun ... tools/train.py --launcher pytorch
    res = dist_train(cfg, 2, ['--work-dir', work])
    assert res.returncode == 0, tail(res)
    rel = relative_difference(str(work), reference)
    assert rel < TOLERANCE, f'DDP vs one process: rel {rel:.2e}'
    # The held-out loss is per sample: each rank validates half the set,
    # and together they find what one process finds.
    assert final_val_loss(work) == pytest.approx(final_val_loss(reference),
                                                 rel=1e-4)

    ranks = [probe(work, r) for r in (0, 1)]
    single = probe(reference, 0)
    for info in ranks:
        assert info['wrapper'] == 'DiffusionDDP' and info['world'] == 2
        # Every frozen parameter (teacher, VAE, text encoders) is in DDP's
        # ignore list, no trainable one is.
        assert set(info['frozen']) <= set(info['ignored'])
        assert not set(info['trainable']) & set(info['ignored'])
        assert any(n.startswith('teacher.') for n in info['ignored'])
    # Ignored means not broadcast: the frozen marker kept each rank's value.
    assert [info['rank_marker'] for info in ranks] == [0.0, 1.0]
    # Rank 0 draws what one process draws; rank 1 a stream of its own.
    assert ranks[0]['rng'] == single['rng']
    assert ranks[1]['rng'] != ranks[0]['rng']
    # Only rank 0 writes files; the checkpoint holds both ranks' random
    # states, so a resumed run continues each rank's own stream.
    ckpt = torch.load(work / 'iter_4.pth', weights_only=False)
    states = ckpt['random_state_ranks']
    assert len(states) == 2
    assert not torch.equal(states[0]['torch'], states[1]['torch'])
    assert not list(work.glob('.tmp-*'))


@pytest.mark.slow
@pytest.mark.scenario
def test_fsdp_two_processes_match_one_process(one_process, tmp_path):
    """FSDP through DiffusionFlexibleRunner, launched the way ``mim train --launcher
    pytorch`` does (torch.distributed.launch, which passes --local-rank);
    half the iterations, then a resume from the FSDP checkpoint."""
    _, reference, data = one_process
    cfg = same_noise_config(tmp_path / 'cfg.py', data,
                            base='ssd_1b_distill_fsdp_toy.py')
    work = tmp_path / 'fsdp'
    args = [cfg, '--launcher', 'pytorch', '--work-dir', work]
    half = ['--cfg-options', f'train_cfg.max_iters={ITERS // 2}']
    res = torchrun(args + half, module='torch.distributed.launch')
    assert res.returncode == 0, tail(res)
    res = torchrun(args + ['--resume'], module='torch.distributed.launch')
    assert res.returncode == 0, tail(res)
    assert f'Load checkpoint from {work}/iter_{ITERS // 2}.pth' in \
        res.stdout + res.stderr
    rel = relative_difference(str(work), reference)
    assert rel < TOLERANCE, f'FSDP vs one process: rel {rel:.2e}'
    # validated through FSDP's forward (the shards gathered)
    assert final_val_loss(work) == pytest.approx(final_val_loss(reference),
                                                 rel=1e-4)

    ranks = [probe(work, r) for r in (0, 1)]
    single = probe(reference, 0)
    for info in ranks:
        assert info['wrapper'] == 'DiffusionFSDP'
        # Flat parameters hold trainable student weights only: the frozen
        # teacher, VAE and text encoders are never sharded with them.
        assert info['flat_params']
        for requires_grad, names in info['flat_params']:
            assert requires_grad
            assert all(n.startswith('student.unet.') for n in names), names
        # The teacher is whole on every rank; the student is sharded.
        assert info['local_numel']['teacher'] == \
            single['local_numel']['teacher']
        assert info['local_numel']['student.unet'] < \
            single['local_numel']['student.unet']
    assert sum(r['local_numel']['student.unet'] for r in ranks) >= \
        single['local_numel']['student.unet']
    # The checkpoint holds the full (gathered) student, like one process's.
    mine = torch.load(work / 'iter_4.pth', weights_only=False)['state_dict']
    theirs = torch.load(osp.join(reference, 'iter_4.pth'),
                        weights_only=False)['state_dict']
    assert {k: v.shape for k, v in mine.items()} == \
        {k: v.shape for k, v in theirs.items()}


@pytest.mark.scenario
@pytest.mark.parametrize('stage,name', [(2, 'zero2'), (3, 'zero3'),
                                        (2, 'zero2_offload')])
def test_deepspeed_configs_build_their_strategy(stage, name, monkeypatch):
    """DeepSpeed is not installed here (and needs GPUs): the configs are
    checked as configs and mmengine's DeepSpeedStrategy builds its
    DeepSpeed config dict from them (with a stand-in module)."""
    from mmengine._strategy import deepspeed as ds_module
    from mmengine.config import Config
    from mmengine.registry import OPTIM_WRAPPERS, STRATEGIES
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'toy',
                 f'ssd_1b_distill_deepspeed_{name}_toy.py'))
    assert cfg.runner_type == 'DiffusionFlexibleRunner'
    assert cfg.optim_wrapper.type == 'DeepSpeedOptimWrapper'
    assert 'clip_grad' not in cfg.optim_wrapper  # DeepSpeed clips
    assert OPTIM_WRAPPERS.get('DeepSpeedOptimWrapper') is not None
    monkeypatch.setattr(ds_module, 'deepspeed',
                        types.SimpleNamespace(__version__='0.14.0'))
    strategy = dict(cfg.strategy)
    # what FlexibleRunner adds before building it
    strategy['train_micro_batch_size_per_gpu'] = \
        cfg.train_dataloader.batch_size
    built = STRATEGIES.build(strategy)
    ds = built.config
    assert ds['zero_optimization']['stage'] == stage
    assert ds['bf16'] == {'enabled': True}
    assert ds['gradient_clipping'] == 1.0
    assert ds['train_micro_batch_size_per_gpu'] == 64
    assert ds['gradient_accumulation_steps'] == 1
    assert built.exclude_frozen_parameters is True
    # Only the offload config moves the optimizer states to pinned CPU
    # memory; the rest of its ZeRO-2 settings are deepspeed_zero2.py's.
    offload = ds['zero_optimization'].pop('offload_optimizer', None)
    if name == 'zero2_offload':
        assert offload == dict(device='cpu', pin_memory=True)
        plain = Config.fromfile(osp.join(
            REPO, 'configs', '_base_', 'strategies', 'deepspeed_zero2.py'))
        assert ds['zero_optimization'] == \
            plain.strategy['zero_optimization']
    else:
        assert offload is None


def test_resume_gives_each_rank_its_own_random_state(monkeypatch):
    from diffkd.engine.hooks import random_state_hook as module
    restored = []
    monkeypatch.setattr(module, 'set_random_state', restored.append)
    monkeypatch.setattr(module, 'set_random_seed', lambda s: restored.append(s))
    ranks = [dict(rank=0), dict(rank=1)]
    checkpoint = dict(random_state=ranks[0], random_state_ranks=ranks)

    def first_iteration(rank, world, skip=3):
        """What the hook does after mmengine's fast-forward of ``skip``
        batches, before the next batch is drawn."""
        restored.clear()
        monkeypatch.setattr(module, 'get_dist_info', lambda: (rank, world))
        hook = module.RandomStateHook()
        hook.after_load_checkpoint(None, checkpoint)
        loop = types.SimpleNamespace(dataloader_iterator=iter(range(10)))
        runner = types.SimpleNamespace(train_loop=loop, iter=skip, seed=42)
        hook.before_train(runner)
        for _ in range(skip):  # mmengine's fast-forward
            next(loop.dataloader_iterator)
        assert not restored, 'restored before the fast-forward ended'
        assert next(loop.dataloader_iterator) == skip
        assert isinstance(loop.dataloader_iterator, type(iter(range(0))))
        return restored

    assert first_iteration(1, 2) == [dict(rank=1)]
    assert first_iteration(0, 2) == [dict(rank=0)]
    # Another number of processes: rank 0 continues, the others reseed
    # with a stream of their own.
    assert first_iteration(0, 3) == [dict(rank=0)]
    reseeded = first_iteration(2, 3)
    assert reseeded == [hash((42, 2, 3)) % 2**32]
