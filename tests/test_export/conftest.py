import pytest

from tests.conftest import run_config


@pytest.fixture(scope='package')
def ssd1b_run(tmp_path_factory, toy_sdxl):
    """A 3-iteration toy SSD-1B distillation (untrained toy teacher)."""
    return run_config(
        'toy/ssd_1b_distill_toy.py', tmp_path_factory.mktemp('ssd1b'),
        f'model.teacher.model={toy_sdxl}', f'model.student.model={toy_sdxl}',
        'train_cfg.max_iters=3', 'train_dataloader.batch_size=4',
        'custom_hooks.0.interval=0', 'custom_hooks.0.num_inference_steps=2')
