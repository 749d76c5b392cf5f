from PIL import Image

from diffkd.evaluation.toy import sample_grid


def test_sample_grid_places_tiles_in_rows_and_fills_black():
    tiles = [Image.new('RGB', (4, 3), (10 * i, 0, 0)) for i in range(1, 13)]
    grid = sample_grid(tiles, cols=5)
    assert grid.size == (5 * 4, 3 * 3)
    assert grid.getpixel((0, 0)) == (10, 0, 0)
    assert grid.getpixel((4 * 4, 3)) == (100, 0, 0)  # 10th: row 1, col 4
    assert grid.getpixel((4 * 1, 3 * 2)) == (120, 0, 0)  # 12th: row 2, col 1
    assert grid.getpixel((4 * 2, 3 * 2)) == (0, 0, 0)  # filled
    assert sample_grid(tiles[:3], cols=10).size == (3 * 4, 3)
