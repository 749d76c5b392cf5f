import os
import os.path as osp

from diffusers import StableDiffusionPipeline

from diffkd.utils.hub import resolve_model_path


def test_teacher_asset_is_trained_by_the_finetune_config(monkeypatch,
                                                         toy_sd15):
    # A 2-iteration teacher: the same build path as the real first use.
    monkeypatch.setenv(
        'DIFFKD_TOY_TEACHER_OPTIONS',
        'train_cfg.max_iters=2 train_dataloader.batch_size=2 '
        'custom_hooks.0.num_inference_steps=1')
    path = resolve_model_path('diffkd-toy/sd15-teacher')
    assert osp.isfile(osp.join(path, 'training', 'train.log'))
    assert os.listdir(osp.join(path, 'training', 'vis'))
    pipe = StableDiffusionPipeline.from_pretrained(path)
    base = StableDiffusionPipeline.from_pretrained(toy_sd15)
    assert not all(
        (a == b).all() for a, b in zip(pipe.unet.parameters(),
                                       base.unet.parameters()))
    # Cached: a second resolve returns at once, without training.
    assert resolve_model_path('diffkd-toy/sd15-teacher') == path
