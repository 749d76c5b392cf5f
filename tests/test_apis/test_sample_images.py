"""diffkd.apis.sample_images: what tools/infer.py writes."""
import os.path as osp

import numpy as np
import torch
from diffusers import DiffusionPipeline
from PIL import Image

from diffkd.apis import sample_filename, sample_images


def test_seeds_count_up_over_prompts_and_images(tmp_path, toy_sd15):
    pipe = DiffusionPipeline.from_pretrained(toy_sd15)
    pipe.set_progress_bar_config(disable=True)
    seen = []
    paths = sample_images(pipe, ['a red circle', 'a blue square'],
                          str(tmp_path / 'out'), steps=1, seed=5,
                          num_images=2, height=32, width=32,
                          on_saved=seen.append)
    assert paths == seen == [
        str(tmp_path / 'out' / sample_filename(i, p, s))
        for i, p, s in ((0, 'a red circle', 5), (0, 'a red circle', 6),
                        (1, 'a blue square', 7), (1, 'a blue square', 8))]
    assert all(osp.isfile(p) for p in paths)
    # the third image is the pipeline's own sample with seed 7
    direct = pipe('a blue square', num_inference_steps=1, height=32,
                  width=32, generator=torch.Generator('cpu').manual_seed(7)
                  ).images[0]
    with Image.open(paths[2]) as written:
        assert np.array_equal(np.asarray(written), np.asarray(direct))
