"""The log processor of configs/_base_/default_runtime.py: training losses
smoothed over the window, held-out losses as each validation's own value,
per-pair feature KD values in the scalar backends but not on the console."""
import os.path as osp
from types import SimpleNamespace

from mmengine.config import Config
from mmengine.logging import MessageHub

from diffkd.engine import DiffusionLogProcessor
from diffkd.registry import LOG_PROCESSORS
from tests.conftest import REPO


def processor():
    cfg = Config.fromfile(
        osp.join(REPO, 'configs', '_base_', 'default_runtime.py'))
    proc = LOG_PROCESSORS.build(cfg.log_processor)
    assert isinstance(proc, DiffusionLogProcessor)
    return proc


def fake_runner(hub, iteration=1, max_iters=10, val_batches=2):
    loop = SimpleNamespace(dataloader=[None] * val_batches)
    return SimpleNamespace(message_hub=hub, iter=iteration,
                           max_iters=max_iters, _train_loop=object(),
                           val_loop=loop, train_loop=object())


def test_console_line_leaves_out_feature_pairs_that_the_backends_get():
    hub = MessageHub.get_instance('test_log_processor_train')
    for loss, pair in ((1.0, 0.25), (3.0, 0.75)):
        hub.update_scalar('train/lr', 1e-3)
        hub.update_scalar('train/loss', loss)
        hub.update_scalar('train/loss_kd_feat', loss / 2)
        hub.update_scalar('train/kd_feat/mid_block', pair)
    tag, line = processor().get_log_after_iter(fake_runner(hub), 1, 'train')
    # losses: the mean over the window (mmengine's smoothing) ...
    assert tag['loss'] == 2.0 and tag['loss_kd_feat'] == 1.0
    assert 'loss: 2.0000' in line and 'loss_kd_feat: 1.0000' in line
    # ... a pair's value: the latest, for the backends only
    assert tag['kd_feat/mid_block'] == 0.75
    assert 'kd_feat' not in line.replace('loss_kd_feat', '')


def test_held_out_losses_are_each_validations_own_value():
    hub = MessageHub.get_instance('test_log_processor_val')
    for value in (4.0, 2.0):  # two validations
        hub.update_scalar('val/val/loss', value)
        hub.update_scalar('val/time', 0.5)
        hub.update_scalar('val/data_time', 0.1)
    tag, line = processor().get_log_after_epoch(fake_runner(hub), 2, 'val')
    assert tag['val/loss'] == 2.0, tag
    assert 'val/loss: 2.0000' in line
