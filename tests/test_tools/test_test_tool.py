"""tools/test.py on a finished toy distillation: every metric printed and
saved, with the generated images beside the scores."""
import glob
import json
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from tests.conftest import run_config, run_tool


@pytest.fixture(scope='module')
def distilled(tmp_path_factory, toy_sd15):
    return run_config(
        'toy/bk_sdm_small_distill_toy.py',
        tmp_path_factory.mktemp('eval') / 'run',
        f'model.teacher.model={toy_sd15}', f'model.student.model={toy_sd15}',
        'train_cfg.max_iters=2', 'train_dataloader.batch_size=4',
        'custom_hooks.0.interval=0')


def test_every_metric_is_printed_and_saved(distilled, tmp_path, tiny_clip,
                                           tiny_inception, lpips_files,
                                           capsys):
    config = osp.join(distilled, 'bk_sdm_small_distill_toy.py')
    out = tmp_path / 'metrics.json'
    metrics = run_tool('test.py', [
        config, distilled, '--work-dir', tmp_path / 'test', '--out', out,
        '--cfg-options', 'test_dataloader.dataset.num_prompts=6',
        'test_dataloader.batch_size=4',
        'test_cfg.sampling.num_inference_steps=2',
        f'test_evaluator.1.lpips_backbone={lpips_files[0]}',
        f'test_evaluator.1.lpips_heads={lpips_files[1]}',
        f'test_evaluator.2.model={tiny_clip}',
        f'test_evaluator.3.inception={tiny_inception}'])
    expected = {
        'toy/colour_acc', 'toy/shape_acc', 'toy/background_acc',
        'toy/all_acc', 'toy/teacher/colour_acc', 'toy/teacher/shape_acc',
        'toy/teacher/background_acc', 'toy/teacher/all_acc',
        'agreement/latent_mse', 'agreement/psnr', 'agreement/lpips',
        'clip/score', 'clip/teacher/score', 'fid/score', 'fid/teacher/score'}
    assert set(metrics) == expected
    text = capsys.readouterr().out
    printed = json.loads(text[text.rindex('{\n  "'):])
    assert printed == metrics
    assert json.loads(out.read_text()) == metrics

    # Beside the scores: every image, the teacher's too, and their prompts.
    test_dir, = glob.glob(str(tmp_path / 'test' / '*' / 'test'))
    assert json.load(open(osp.join(test_dir, 'metrics.json'))) == metrics
    rows = [json.loads(line) for line in open(
        osp.join(test_dir, 'samples.jsonl'))]
    assert [r['index'] for r in rows] == list(range(6))
    assert [r['seed'] for r in rows] == list(range(6))
    for row in rows:
        img = np.asarray(Image.open(osp.join(test_dir, row['file'])))
        assert img.shape == (32, 32, 3)
        assert osp.isfile(osp.join(test_dir, row['teacher_file']))
