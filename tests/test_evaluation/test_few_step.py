"""Few-step evaluation: the reference agrees with itself exactly, fewer
steps move away from it, and the tool writes the table."""
import json

import pytest

from diffkd.evaluation.few_step import (Sampler, few_step_table,
                                        load_sampler_pipeline,
                                        markdown_table)
from tests.conftest import run_tool

PROMPTS = ['a red circle on a blue background',
           'a yellow square on a black background']


def test_reference_agrees_with_itself_and_one_step_does_not(diffkd_home):
    pipe = load_sampler_pipeline('diffkd-toy/sdxl-teacher')
    teacher = Sampler('teacher', pipe, 4.0)
    result = few_step_table([teacher], teacher, steps=(1, 8),
                            reference_steps=8, prompts=PROMPTS)
    rows = {r['steps']: r for r in result['rows']}
    assert rows[8]['latent_mse'] == 0.0  # same pipeline, prompts, seeds
    assert rows[1]['latent_mse'] > 1e-3
    for r in rows.values():
        assert 0.0 <= r['prompt_score'] <= r['colour_acc'] <= 1.0
        assert r['latency_s'] > 0
        assert r['scheduler'] == 'EulerDiscreteScheduler'
    table = markdown_table(result)
    assert table.splitlines()[0] == '| model | 1 step | 8 steps |'
    assert table.splitlines()[2].startswith('| teacher | ')
    with pytest.raises(ValueError, match='step counts must be >= 1'):
        few_step_table([teacher], teacher, steps=(0, ), prompts=PROMPTS)


def test_tool_writes_json_and_markdown(diffkd_home, tmp_path):
    out, md = tmp_path / 'r.json', tmp_path / 'r.md'
    run_tool('analysis_tools/few_step_eval.py', [
        '--model', 'teacher', 'diffkd-toy/sdxl-teacher', '4.0',
        '--steps', '1', '--reference-steps', '2', '--num-prompts', '2',
        '--out', out, '--markdown', md])
    result = json.loads(out.read_text())
    assert [(r['model'], r['steps']) for r in result['rows']] == [
        ('teacher', 1)]
    assert result['reference'] == dict(model='diffkd-toy/sdxl-teacher',
                                       steps=2, guidance_scale=4.0)
    assert md.read_text().startswith('| model | 1 step |')
