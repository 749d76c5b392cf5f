"""Scores of a toy run's export, as the analysis tools print them:
prompt following and agreement with another pipeline
(``tools/analysis_tools/toy_score.py``), how often a DreamBooth-LoRA
run draws its concept with and without the LoRA
(``tools/analysis_tools/concept_score.py``), and how often a teacher's
LoRA does on the teacher, transplanted onto a student and after the short
KD pass (``tools/analysis_tools/transplant_score.py``)."""
from typing import Dict, List, Optional

from diffkd.apis import load_pipeline
from diffkd.evaluation.toy import (evaluate_toy_concept,
                                   evaluate_toy_pipeline, latent_distance,
                                   sample_grid, toy_prompts)
from diffkd.utils.hub import TOY_PREFIX, resolve_model_path


def load_scored_pipeline(path: str):
    """A toy asset (``diffkd-toy/<name>``) as diffusers loads it; a work
    dir or export folder through :func:`diffkd.apis.load_pipeline`."""
    if path.startswith(TOY_PREFIX):
        from diffusers import DiffusionPipeline
        return DiffusionPipeline.from_pretrained(resolve_model_path(path))
    return load_pipeline(path)


def toy_score(work_dir: str, against: Optional[str] = None,
              num_prompts: int = 90, steps: int = 20, guidance: float = 4.0,
              seed: int = 0, grid: Optional[str] = None) -> Dict:
    """Prompt-following score of ``work_dir``'s pipeline on the first
    ``num_prompts`` toy prompts and, with ``against``, the latent MSE to
    that pipeline's samples (same prompts and seeds). ``grid``: save the
    samples as one PNG there."""
    prompts = toy_prompts(num_prompts)
    kw = dict(seed=seed, steps=steps, guidance=guidance)
    pipe = load_scored_pipeline(work_dir)
    res = evaluate_toy_pipeline(pipe, prompts, **kw)
    images = res.pop('images')
    res.pop('readings')
    res.pop('prompts')
    res['num_prompts'] = len(prompts)
    if against:
        res['latent_mse_vs_other'] = latent_distance(
            pipe, load_scored_pipeline(against), prompts, **kw)
    if grid:
        sample_grid(images, cols=10).save(grid)
    return res


def concept_score(work_dir: str, prompt: str = 'a sks circle',
                  num_images: int = 16, steps: int = 20,
                  guidance: float = 2.0, seed: int = 0,
                  grid: Optional[str] = None) -> Dict:
    """How often ``work_dir``'s LoRA export draws its concept for
    ``prompt``, with the LoRA and without it (same seeds and sampler).
    ``grid``: save both sample rows (LoRA on top) as one PNG there."""
    kw = dict(num_images=num_images, prompt=prompt, seed=seed, steps=steps,
              guidance=guidance)
    pipe = load_pipeline(work_dir)
    if not pipe.get_list_adapters():
        raise SystemExit(f'{work_dir} holds no LoRA export')
    with_lora = evaluate_toy_concept(pipe, **kw)
    pipe.unload_lora_weights()
    without = evaluate_toy_concept(pipe, **kw)
    if grid:
        from diffusers.utils import make_image_grid
        make_image_grid(with_lora['images'] + without['images'], rows=2,
                        cols=num_images).save(grid)
    return dict(prompt=prompt, num_images=num_images,
                with_lora=dict(rate=with_lora['concept_rate'],
                               colours=with_lora['colours']),
                without_lora=dict(rate=without['concept_rate'],
                                  colours=without['colours']))


def transplant_concept_rates(teacher_lora_run: str, student_run: str,
                             kd_run: Optional[str] = None,
                             compression: Optional[dict] = None,
                             prompt: str = 'a sks circle',
                             num_images: int = 16, steps: int = 20,
                             guidance: float = 2.0, seed: int = 0
                             ) -> List[Dict]:
    """How often a teacher's DreamBooth-LoRA draws its concept on the
    teacher (``teacher_lora_run``'s export), transplanted onto the
    distilled student with no KD (``student_run``'s export with the LoRA
    file ``tools/transplant_lora.py`` writes, by ``compression``'s module
    map, SSD-1B's by default) and, with ``kd_run``, after the short KD pass
    (``configs/toy/ssd_1b_lora_transplant_toy.py``'s export). Same prompt,
    seeds and sampler for all; one row each: ``model``, ``lora``,
    ``rate``, ``colours``."""
    import os.path as osp
    import tempfile

    from diffkd.export import find_export
    from diffkd.export.transplant import transplant_lora_file
    from diffkd.models.lora import lora_file
    kw = dict(num_images=num_images, prompt=prompt, seed=seed, steps=steps,
              guidance=guidance)

    def row(model, lora, pipe):
        res = evaluate_toy_concept(pipe, **kw)
        return dict(model=model, lora=lora, rate=res['concept_rate'],
                    colours=res['colours'])

    teacher = load_pipeline(teacher_lora_run)
    rows = [row('teacher', 'its LoRA', teacher)]
    student = load_pipeline(student_run)
    with tempfile.TemporaryDirectory() as tmp:
        moved = osp.join(tmp, 'transplanted.safetensors')
        transplant_lora_file(
            lora_file(osp.join(find_export(teacher_lora_run), 'lora')),
            dict(teacher.unet.config), moved,
            compression or dict(type='SSD1B'))
        student.load_lora_weights(moved)
    rows.append(row('student', "teacher's LoRA transplanted, no KD",
                    student))
    if kd_run:
        rows.append(row('student', 'transplanted, after the KD pass',
                        load_pipeline(kd_run)))
    return rows


def concept_table(rows: List[Dict], num_images: int) -> str:
    """:func:`transplant_concept_rates`' rows as a Markdown table."""
    lines = ['| UNet | LoRA | concept rate | colours |', '|---|---|---|---|']
    for r in rows:
        colours = ', '.join(f'{n} {c}'
                            for n, c in sorted(r['colours'].items()))
        lines.append(f"| {r['model']} | {r['lora']} | "
                     f"{round(r['rate'] * num_images)} / {num_images} "
                     f"({r['rate']:.0%}) | {colours} |")
    return '\n'.join(lines)
