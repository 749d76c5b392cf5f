"""The model card (``README.md`` in the Hub's format) of an export.

Metadata through huggingface_hub's ``ModelCardData``: ``base_model``,
``library_name: diffusers``, ``pipeline_tag``, tags and the base model's
license. The body says what was trained (recipe, parameters teacher ->
student, data, iterations), the scores ``tools/test.py`` measured when a
test was run, and how to load the folder.
"""
import glob
import json
import os.path as osp
from typing import Dict, Optional

CARD = 'README.md'
# Keys of a dataset config that say which data it reads.
_DATA_KEYS = ('dataset', 'data_root', 'instance_data_root', 'class_data_root',
              'data_files', 'ann_file', 'shards', 'path', 'instance_prompt')


def _describe_dataset(ds) -> str:
    if not isinstance(ds, dict):
        return str(ds)
    if ds.get('type') == 'ConcatDataset' or 'datasets' in ds:
        return ' + '.join(_describe_dataset(d) for d in ds['datasets'])
    if isinstance(ds.get('source'), dict):  # a cache of another dataset
        return f'{ds.get("type")} of {_describe_dataset(ds["source"])}'
    if 'dataset' in ds and isinstance(ds['dataset'], dict):
        return _describe_dataset(ds['dataset'])  # a wrapper (repeat, ...)
    parts = [f'{k}={ds[k]!r}' for k in _DATA_KEYS
             if isinstance(ds.get(k), (str, list))]
    return f'{ds.get("type", "dataset")}({", ".join(parts)})'


def run_facts(cfg) -> Dict:
    """What a card reports about the run, read from its config."""
    model = cfg.get('model', {}) or {}
    lora = model.get('lora') or (model.get('student') or {}).get('lora')
    facts = dict(
        config=osp.basename(cfg.filename) if getattr(cfg, 'filename', None)
        else None,
        recipe=(model.get('compression') or {}).get('type'),
        max_iters=(cfg.get('train_cfg') or {}).get('max_iters'),
        lora=dict(lora) if lora else None)
    loader = cfg.get('train_dataloader') or {}
    if loader.get('dataset') is not None:
        facts['data'] = _describe_dataset(loader['dataset'])
        facts['batch_size'] = loader.get('batch_size')
    return {k: v for k, v in facts.items() if v is not None}


def find_metrics(work_dir: Optional[str]) -> Optional[Dict]:
    """The scores of the latest ``tools/test.py`` run of ``work_dir``
    (``<work_dir>/<timestamp>/test/metrics.json``), if any."""
    if not work_dir:
        return None
    found = glob.glob(osp.join(work_dir, '*', 'test', 'metrics.json'))
    if not found:
        return None
    with open(max(found, key=osp.getmtime)) as f:
        return json.load(f)


def base_license(base_dir: Optional[str]) -> Optional[str]:
    """The ``license`` of the base model's own card, when it has one."""
    from huggingface_hub import ModelCard
    path = osp.join(base_dir, CARD) if base_dir else None
    if not path or not osp.isfile(path):
        return None
    try:
        return ModelCard.load(path).data.license
    except Exception:  # a README that is not a model card
        return None


def _fmt_params(n: Optional[int]) -> str:
    return f'{n / 1e6:.1f}M' if n is not None else '?'


def build_model_card(info: Dict, repo_id: Optional[str] = None,
                     metrics: Optional[Dict] = None,
                     license: Optional[str] = None):
    """A ``huggingface_hub.ModelCard`` for an export described by
    ``info`` (its ``export_info.json``)."""
    from huggingface_hub import ModelCard, ModelCardData
    run = info.get('run', {})
    xl = 'XL' in info.get('pipeline_class', '')
    distilled = bool(info.get('teacher'))
    is_lora = 'lora' in info.get('parts', [])
    tags = ['diffkd', 'text-to-image',
            'stable-diffusion-xl' if xl else 'stable-diffusion']
    if distilled:
        tags.append('knowledge-distillation')
    if run.get('recipe'):
        tags.append(run['recipe'].lower())
    if is_lora:
        tags.append('lora')
    base = info.get('teacher') or info['base_model']
    # The Hub accepts only hub ids as base_model; a local folder stays in
    # the body.
    local = osp.isabs(base) or base.startswith(('.', 'diffkd-toy/'))
    data = ModelCardData(
        base_model=None if repo_id and local else base,
        library_name='diffusers',
        pipeline_tag='text-to-image', tags=tags, license=license)

    name = repo_id or 'this folder'
    lines = [f'# {repo_id.split("/")[-1] if repo_id else "diffkd export"}',
             '']
    if distilled:
        lines.append(f'A UNet distilled from `{info["teacher"]}` with '
                     'diffkd' + (f', recipe `{run["recipe"]}`.'
                                 if run.get('recipe') else '.'))
    elif is_lora:
        lines.append(f'A LoRA trained with diffkd on `{info["base_model"]}`.')
    else:
        lines.append(f'A UNet fine-tuned with diffkd from '
                     f'`{info["base_model"]}`.')
    lines += ['', '## Training', '', '| | |', '|---|---|']
    rows = [('pipeline', info.get('pipeline_class')),
            ('base pipeline', info.get('base_model')),
            ('teacher', info.get('teacher')),
            ('recipe', run.get('recipe')),
            ('config', run.get('config')),
            ('data', run.get('data')),
            ('batch size', run.get('batch_size')),
            ('iterations', info.get('step')),
            ('LoRA', json.dumps(run['lora']) if run.get('lora') else None)]
    params = info.get('params')
    if params:
        rows.insert(4, ('UNet parameters (teacher -> student)',
                        f'{_fmt_params(params.get("teacher"))} -> '
                        f'{_fmt_params(params.get("student"))}'))
    lines += [f'| {k} | {v} |' for k, v in rows if v is not None]
    lines += ['', '## Evaluation', '']
    if metrics:
        lines += ['Measured with `tools/test.py`:', '', '| metric | value |',
                  '|---|---|']
        lines += [f'| {k} | {v:.4g} |' for k, v in sorted(metrics.items())]
    else:
        lines.append('Not evaluated yet (run `tools/test.py CONFIG WORK_DIR`'
                     ' and export again to list the scores here).')
    cls = info.get('pipeline_class', 'DiffusionPipeline')
    src = repr(repo_id) if repo_id else "'path/to/final'"
    lines += ['', '## Use', '', '```python', 'import torch',
              f'from diffusers import {cls}', '',
              f'pipe = {cls}.from_pretrained({src}, '
              'torch_dtype=torch.float16).to("cuda")']
    if is_lora:
        lines.append(f'pipe.load_lora_weights({src}, subfolder="lora")')
    lines += ['image = pipe("a photo of an astronaut riding a horse")'
              '.images[0]', '```', '',
              f'Single-file and kohya-format files for ComfyUI/A1111, when '
              f'{name} has them, are described in diffkd\'s docs/export.md.']
    return ModelCard(f'---\n{data.to_yaml()}\n---\n\n' + '\n'.join(lines)
                     + '\n')


def write_model_card(export_dir: str, work_dir: Optional[str] = None,
                     repo_id: Optional[str] = None,
                     metrics: Optional[Dict] = None,
                     base_dir: Optional[str] = None) -> str:
    """Write ``export_dir/README.md``; returns its path."""
    with open(osp.join(export_dir, 'export_info.json')) as f:
        info = json.load(f)
    if metrics is None:
        metrics = find_metrics(work_dir)
    card = build_model_card(info, repo_id=repo_id, metrics=metrics,
                            license=base_license(base_dir))
    path = osp.join(export_dir, CARD)
    card.save(path)
    return path
