# Worked example from docs/distill.md: a student of one's own, defined by
# inheriting a config and changing the recipe.
_base_ = './ssd_1b_distill_toy.py'
model = dict(
    compression=dict(
        type='BlockRemoval',
        down_layers=[[0], [0], [0]],
        up_layers=[[0, 2], [0, 2], [0, 2]],
        mid='resnet',
        down_depths=[1, 2, 4],
        up_depths=[[4, 4], [2, 2], [1, 1]]))
