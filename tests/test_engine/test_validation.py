"""One training, whoever starts it: ``tools/train.py CONFIG`` and
``RUNNERS.build(Config.fromfile(CONFIG))`` train the same; the held-out
validation loss (task and KD terms) is logged and never changes training."""
import json
import os
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from diffkd.engine.checkpoint import safe_torch_load
from diffkd.engine.optim import DiffusionOptimWrapper
from diffkd.evaluation.metrics import HeldOutLoss
from diffkd.registry import MODELS, RUNNERS
from tests.conftest import REPO
from tests.test_reliability.conftest import one_thread

TERMS = ('loss', 'loss_task', 'loss_kd_out', 'loss_kd_feat')


def scalars(work):
    """The rows of ``<work>/<timestamp>/vis_data/scalars.json``."""
    path = next(osp.join(work, d, 'vis_data', 'scalars.json')
                for d in sorted(os.listdir(work))
                if osp.isfile(osp.join(work, d, 'vis_data', 'scalars.json')))
    with open(path) as f:
        return [json.loads(line) for line in f]


def train_tool():
    sys.path.insert(0, osp.join(REPO, 'tools'))
    try:
        import train
    finally:
        sys.path.pop(0)
    return train


def test_train_tool_and_runner_from_cfg_train_the_same(tmp_path, toy_sdxl):
    """The toy SSD-1B distillation with a GPU config's precision (float16:
    bfloat16 autocast on this CPU, decided by the optimizer wrapper), 3
    iterations. The two runs also validate at different times (every
    iteration / at the end only), which must not change training either."""
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', 'toy', 'ssd_1b_distill_toy.py'))
    cfg.merge_from_dict({
        'model.teacher.model': toy_sdxl, 'model.student.model': toy_sdxl,
        'train_cfg.max_iters': 3, 'train_dataloader.batch_size': 2,
        'custom_hooks': [], 'default_hooks.logger.interval': 1,
        'optim_wrapper.dtype': 'float16',
        'val_dataloader.batch_size': 2,
        'val_dataloader.dataset.max_samples': 4})
    dump = str(tmp_path / 'config.py')
    cfg.dump(dump)

    with one_thread():
        train_tool().main([dump, '--work-dir', str(tmp_path / 'tool'),
                           '--cfg-options', 'train_cfg.val_interval=1'])
        cfg = Config.fromfile(dump)
        cfg.work_dir = str(tmp_path / 'runner')
        runner = RUNNERS.build(cfg)
        runner.train()

    wrapper = runner.optim_wrapper
    assert isinstance(wrapper, DiffusionOptimWrapper)
    assert wrapper.cast_dtype == torch.bfloat16
    # only the student trains: the config names the constructor
    student = runner.model.student.unet
    assert sum(len(g['params']) for g in wrapper.param_groups) == \
        len(list(student.parameters()))

    tool, built = scalars(tmp_path / 'tool'), scalars(tmp_path / 'runner')
    train = [[r[k] for k in TERMS] for r in tool if 'loss' in r]
    assert len(train) == 3
    assert train == [[r[k] for k in TERMS] for r in built if 'loss' in r]
    a = safe_torch_load(str(tmp_path / 'tool' / 'iter_3.pth'))['state_dict']
    b = safe_torch_load(str(tmp_path / 'runner' / 'iter_3.pth'))['state_dict']
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)

    # The held-out loss per KD term, at each validation.
    val = {r['step']: r for r in tool if 'val/loss' in r}
    assert sorted(val) == [1, 2, 3]
    for row in val.values():
        assert all(0 < row[f'val/{k}'] < 1e3 for k in TERMS), row
        assert row['val/loss'] == pytest.approx(sum(
            row[f'val/{k}'] for k in TERMS[1:]))
    assert val[1]['val/loss'] != val[3]['val/loss']  # the student trained
    # Same weights, fixed noise: the same held-out loss.
    last = [r for r in built if 'val/loss' in r]
    assert [r['step'] for r in last] == [3]
    assert {k: last[0][f'val/{k}'] for k in TERMS} == pytest.approx(
        {k: val[3][f'val/{k}'] for k in TERMS}, rel=1e-6)


def test_held_out_loss_is_fixed_per_sample(toy_sd15):
    """Each sample draws its noise and timestep from its own seed: the
    value does not depend on the batch it is in, nor on (or change) the
    global generators that training uses."""
    with DefaultScope.overwrite_default_scope('diffkd'):
        model = MODELS.build(dict(type='StableDiffusion', model=toy_sd15))
    model.eval()
    g = torch.Generator().manual_seed(0)
    img = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    text = ['a red circle on a blue background'] * 4

    def val(rows, index):
        data = dict(inputs=dict(img=img[rows], text=[text[i] for i in rows]),
                    data_samples=dict(sample_idx=torch.tensor(index)))
        with torch.no_grad():
            return model.val_step(data)

    state = torch.get_rng_state()
    whole = val([0, 1, 2, 3], [10, 11, 12, 13])
    assert torch.equal(torch.get_rng_state(), state)
    metric = HeldOutLoss()
    metric.process(None, val([0, 1], [10, 11]))
    metric.process(None, val([2, 3], [12, 13]))
    halves = metric.compute_metrics(metric.results)
    assert halves['loss'] == pytest.approx(float(whole[0]['loss']),
                                           rel=1e-5)
    torch.manual_seed(123)  # another global state: the same value
    assert float(val([0, 1, 2, 3], [10, 11, 12, 13])[0]['loss']) == \
        float(whole[0]['loss'])
    # The draws follow the sample: other indices, other noise.
    assert float(val([0, 1, 2, 3], [20, 21, 22, 23])[0]['loss']) != \
        float(whole[0]['loss'])
    with pytest.raises(ValueError, match="keep 'sample_idx' in the val "
                       "pipeline's PackInputs meta_keys"):
        model.val_step(dict(inputs=dict(img=img, text=text),
                            data_samples=None))
