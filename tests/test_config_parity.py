"""A toy twin is its real config (docs/distill.md, "Toy twins").

Every config under ``configs/toy/`` either inherits one real config (named
in its ``_base_``) and differs from it only in the toy world's keys below,
or is listed in ``NO_REAL_PARENT`` with the reason. Both configs are built
from their files with ``Config.fromfile``, flattened to dotted keys and
compared.
"""
import ast
import fnmatch
import glob
import os.path as osp
import re

import pytest
from mmengine.config import Config

CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))),
                      'configs')
TOY_DIR = osp.join(CONFIG_DIR, 'toy')
MISSING = '<not set>'

# What the toy world may set differently from every real config: flattened
# keys ("a.b.0.c"), where "*" matches any run of characters.
TOY_WORLD = {
    'model ids and paths': (
        'base_model', 'student_unet', 'model.model', 'model.unet',
        'model.student.unet',
        'model.student.model', 'model.teacher.model',
        'model.teacher.subfolder', 'model.student_pretrained.name_or_path',
        # LoRA files of other runs (a teacher's, its transplant)
        'model.teacher.lora', 'model.student.lora.weights'),
    'data, resolution and batch size': (
        'train_pipeline*', 'train_dataloader.batch_size',
        'train_dataloader.num_workers', 'train_dataloader.persistent_workers',
        'train_dataloader.dataset.*', 'test_*',
        # the toy shapes are a map-style set; real distillations stream
        'train_dataloader.sampler*', 'train_dataloader.collate_fn*'),
    'held-out validation on the toy shapes': ('val_*',
                                              'train_cfg.val_interval'),
    'schedule (the EMA horizon follows its length)': (
        'optim_wrapper.optimizer.lr', 'train_cfg.max_iters',
        'param_scheduler*', 'custom_hooks.*.momentum'),
    'logging, checkpoint and sample intervals': (
        'default_hooks.logger.interval', 'default_hooks.checkpoint.interval',
        'default_hooks.checkpoint.max_keep_ckpts', 'custom_hooks.*.interval'),
    'sample prompts, steps and display size on 32 px toy images': (
        'custom_hooks.*.prompts*', 'custom_hooks.*.num_inference_steps',
        'custom_hooks.*.guidance_scale', 'custom_hooks.*.upscale',
        'custom_hooks.*.height', 'custom_hooks.*.width'),
    "the toy world's values (configs/_base_/*/toy_*.py)": ('toy.*',
                                                          'toy_shards.*'),
}

# Precision: what tests/test_engine/test_twin_precision.py sets back to the
# real config's values before it trains every twin. (DiffusionOptimWrapper
# owns mixed precision: a twin sets ``optim_wrapper.dtype=None`` for fp32.)
PRECISION = ('model.teacher.dtype', 'model.gradient_checkpointing',
             'model.student.gradient_checkpointing', 'optim_wrapper.dtype')
# bf16 autocast and a bf16/fp16 teacher are 4-5x slower on a CPU without
# bf16 arithmetic (docs/performance.md, "Speed switches").
FP32 = 'fp32 on the CPU, bf16 being 4-5x slower there: '
TINY_LORA = ('the toy UNet is too narrow to learn a new shape with '
             'attention-only rank-8 LoRA in 500 steps: rank 16, ResNet '
             'convs too')
_TOY_W = ('model.w_min', 'model.w_max')
_TOY_W_WHY = ('the toy teacher samples best at CFG scale about 4, so the '
              'guidance weight w = scale - 1 is drawn from [2, 5]')
# Keys that only the named twin may set differently, and why.
TWIN_EXCEPTIONS = {
    'ssd_1b_distill_toy.py': (
        PRECISION, FP32 + "the README's main job must finish within 10 "
        'minutes on 2 cores'),
    'ssd_1b_distill_shards_toy.py': (
        PRECISION, FP32 + 'as the main job; its resume test trains it twice'),
    'lcm_sdxl_toy.py': (
        PRECISION + _TOY_W, FP32 + 'builds the step-distilled toy teacher '
        '(configs/toy/sdxl_lcm_teacher_toy.py); ' + _TOY_W_WHY),
    'lcm_lora_ssd_1b_toy.py': (
        PRECISION + _TOY_W + ('model.student.lora.*', ),
        FP32 + 'the LCM toy table of docs/results.md times it; '
        + _TOY_W_WHY + '; rank 8 on a 32-wide UNet'),
    'sdxl_finetune_toy.py': (
        PRECISION, FP32 + 'builds the toy SDXL teacher, the first part of '
        "the README's main job on a fresh machine"),
    'sd15_finetune_toy.py': (
        PRECISION, FP32 + 'builds the toy SD-1.5 teacher of the BK-SDM and '
        'tiny-sd twins and of the KD ablation'),
    'sdxl_lora_toy.py': (PRECISION, FP32 + 'docs/results.md times it'),
    'ssd_1b_lora_toy.py': (PRECISION, FP32 + 'docs/results.md times it'),
    'sdxl_dreambooth_lora_toy.py': (
        PRECISION + ('model.lora.*', ),
        FP32 + 'the README and docs/results.md time it; and ' + TINY_LORA),
    'ssd_1b_dreambooth_lora_toy.py': (
        PRECISION + ('model.lora.*', ),
        FP32 + 'docs/results.md times it; and ' + TINY_LORA),
    'ssd_1b_lora_transplant_toy.py': (
        PRECISION + ('model.student.lora.*', ),
        FP32 + 'as the toy SSD-1B distillation; and the LoRA of '
        'sdxl_dreambooth_lora_toy.py, because ' + TINY_LORA),
    'sd15_dreambooth_lora_toy.py': (('model.lora.*', ), TINY_LORA),
    'tiny_sd_dreambooth_lora_toy.py': (('model.lora.*', ), TINY_LORA),
}

_ABLATION = ('the toy KD ablation (docs/results.md) switches loss terms '
             'off on purpose; no published config does')
_SCALE_OUT = ('mmengine FlexibleRunner strategy on the toy distillation; '
              'the real configs leave the strategy to the user')
# Toy configs without a real config: each inherits the nearest toy twin.
NO_REAL_PARENT = {
    'my_student_distill_toy.py':
    "docs/distill.md's worked example: a student layout of one's own",
    'sdxl_lcm_teacher_toy.py':
    "the toy world's step-distilled teacher (its SDXL-Lightning); no "
    'published config makes one',
    'ssd_1b_distill_cached_toy.py':
    'the main job with its latent cache in a named work_dirs folder',
    'ssd_1b_distill_uncached_toy.py':
    "the main job with the latent cache off: the speed switches' baseline",
    'ssd_1b_distill_fsdp_toy.py': _SCALE_OUT,
    'ssd_1b_distill_deepspeed_zero2_toy.py': _SCALE_OUT,
    'ssd_1b_distill_deepspeed_zero2_offload_toy.py': _SCALE_OUT,
    'ssd_1b_distill_deepspeed_zero3_toy.py': _SCALE_OUT,
    'ablation/bk_sdm_small_task_only.py': _ABLATION,
    'ablation/bk_sdm_small_output_kd.py': _ABLATION,
    'ablation/bk_sdm_small_feature_kd.py': _ABLATION,
    'ablation/bk_sdm_small_self_attn_kd.py': _ABLATION,
    'ablation/ssd_1b_task_only.py': _ABLATION,
    'ablation/ssd_1b_output_kd.py': _ABLATION,
    'ablation/ssd_1b_feature_kd.py': _ABLATION,
    'ablation/ssd_1b_self_attn_kd.py': _ABLATION,
}

TOYS = sorted(
    osp.relpath(p, TOY_DIR)
    for p in glob.glob(osp.join(TOY_DIR, '**', '*.py'), recursive=True))


def base_files(path: str):
    """The ``_base_`` entries of a config file, as absolute paths."""
    tree = ast.parse(open(path).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                getattr(t, 'id', None) == '_base_' for t in node.targets):
            bases = ast.literal_eval(node.value)
            bases = [bases] if isinstance(bases, str) else list(bases)
            return [osp.normpath(osp.join(osp.dirname(path), b))
                    for b in bases]
    return []


def real_parent(toy: str):
    """The real config a toy config inherits, or None."""
    reals = [
        b for b in base_files(osp.join(TOY_DIR, toy))
        if not osp.relpath(b, CONFIG_DIR).startswith(('_base_', 'toy'))
    ]
    assert len(reals) <= 1, f'configs/toy/{toy} inherits several real ' \
        f'configs: {reals}'
    return reals[0] if reals else None


TWINS = {t: real_parent(t) for t in TOYS if t not in NO_REAL_PARENT}


def flatten(obj, prefix=''):
    if isinstance(obj, dict) and obj:
        for k, v in obj.items():
            yield from flatten(v, f'{prefix}{k}.')
    elif isinstance(obj, (list, tuple)) and obj:
        for i, v in enumerate(obj):
            yield from flatten(v, f'{prefix}{i}.')
    else:
        yield prefix[:-1], obj


def flat(path: str) -> dict:
    return dict(flatten(Config.fromfile(path).to_dict()))


def allowed(key: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def differences(real: dict, toy: dict):
    return sorted(k for k in set(real) | set(toy)
                  if real.get(k, MISSING) != toy.get(k, MISSING))


WORLD = [p for patterns in TOY_WORLD.values() for p in patterns]


def test_every_toy_config_has_a_real_parent_or_a_reason():
    unexplained = [t for t, real in TWINS.items() if real is None]
    assert not unexplained, (
        f'{unexplained}: a toy twin inherits its real config '
        "(_base_ = ['../ssd_1b/ssd_1b_distill_from_sdxl.py', ...]); a toy "
        'config without one goes in NO_REAL_PARENT with the reason')
    stale = sorted(set(NO_REAL_PARENT) - set(TOYS))
    assert not stale, f'NO_REAL_PARENT names configs that do not exist: ' \
        f'{stale}'
    stale = sorted(set(TWIN_EXCEPTIONS) - set(TWINS))
    assert not stale, f'TWIN_EXCEPTIONS names no toy twin: {stale}'


@pytest.mark.parametrize('toy', sorted(NO_REAL_PARENT))
def test_a_toy_without_a_real_parent_inherits_a_toy_twin(toy):
    assert real_parent(toy) is None, (
        f'configs/toy/{toy} inherits a real config: remove it from '
        'NO_REAL_PARENT so that the parity test covers it')
    seen, todo = set(), [osp.join(TOY_DIR, toy)]
    while todo:
        path = todo.pop()
        rel = osp.relpath(path, TOY_DIR)
        if rel in TWINS:
            return
        seen.add(path)
        todo += [b for b in base_files(path)
                 if b.startswith(TOY_DIR) and b not in seen]
    pytest.fail(f'configs/toy/{toy} inherits no toy twin')


@pytest.mark.parametrize('toy', sorted(TWINS))
def test_toy_twin_differs_from_its_real_config_only_in_the_toy_world(toy):
    real = TWINS[toy]
    if real is None:
        pytest.skip('no real parent (reported by the test above)')
    real_flat, toy_flat = flat(real), flat(osp.join(TOY_DIR, toy))
    extra, reason = TWIN_EXCEPTIONS.get(toy, ((), None))
    diff = differences(real_flat, toy_flat)
    wrong = [k for k in diff if not allowed(k, WORLD + list(extra))]
    assert not wrong, (
        f'configs/toy/{toy} differs from '
        f'configs/{osp.relpath(real, CONFIG_DIR)} outside the toy world:\n'
        + '\n'.join(f'  {k}: real {real_flat.get(k, MISSING)!r}, toy '
                    f'{toy_flat.get(k, MISSING)!r}' for k in wrong)
        + '\ninherit these from the real config, or add the key to '
        'TWIN_EXCEPTIONS with the reason')
    if extra:
        used = [k for k in diff if allowed(k, extra) and not allowed(k, WORLD)]
        assert used, (f'TWIN_EXCEPTIONS[{toy!r}] ({reason}) is stale: the '
                      f'twin sets none of {extra} differently')


# A model or data source: "org/name" or a relative path, not "diffkd-toy/"
# or a work dir of another toy run.
SOURCE = re.compile(r'^[\w.-]+/[\w./-]+$')


@pytest.mark.parametrize('toy', TOYS)
def test_toy_config_names_no_real_model_or_data(toy):
    cfg = Config.fromfile(osp.join(TOY_DIR, toy)).to_dict()
    real = [f'{k} = {v!r}' for k, v in flatten(cfg)
            if isinstance(v, str) and SOURCE.match(v)
            and not v.startswith(('diffkd-toy/', 'work_dirs/'))]
    assert not real, (f'configs/toy/{toy} would download or read outside '
                      f'the toy world: {real}')
