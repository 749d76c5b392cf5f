"""diffkd.analysis.toy_scores on a toy asset."""
from PIL import Image

from diffkd.analysis.toy_scores import toy_score


def test_a_pipeline_agrees_with_itself(tmp_path, toy_sdxl):
    grid = tmp_path / 'grid.png'
    res = toy_score('diffkd-toy/sdxl', against='diffkd-toy/sdxl',
                    num_prompts=2, steps=2, grid=str(grid))
    assert res['num_prompts'] == 2
    assert 0 <= res['all_acc'] <= 1
    assert res['latent_mse_vs_other'] == 0
    assert not {'images', 'readings', 'prompts'} & set(res)
    # two samples in a grid of 10 columns: one row
    with Image.open(grid) as im:
        assert im.width == 2 * im.height
