"""`mim train diffkd CONFIG` from outside the repository."""
import os
import os.path as osp
import shutil
import subprocess

import pytest

MIM = shutil.which('mim')


@pytest.mark.skipif(MIM is None, reason='openmim is not installed '
                    "(pip install -e '.[tests]' installs it)")
@pytest.mark.parametrize('config', ['sd15_finetune_toy.py',
                                    'configs/toy/sd15_finetune_toy.py'])
def test_mim_train_from_another_directory(tmp_path, config, toy_sd15):
    work = tmp_path / 'work'
    cmd = [MIM, 'train', 'diffkd', config, '--work-dir', str(work),
           '--cfg-options', 'train_cfg.max_iters=2',
           'train_dataloader.batch_size=2', 'custom_hooks.0.interval=0',
           'custom_hooks.0.num_inference_steps=1']
    res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                         env=dict(os.environ))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert osp.isfile(work / 'final' / 'unet' / 'config.json')
