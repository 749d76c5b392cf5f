# The toy DreamBooth subject: five photos of a red ring ("a sks circle"),
# with prior preservation on "a circle" (class images generated once by the
# base model and cached in $DIFFKD_HOME/class_images). A DreamBooth toy
# twin sets its dataloader with these values and its own base model:
#   train_dataloader = dict(..., dataset=dict(
#       instance_data={{_base_.toy.instance_data}}, ...))
# (see ./toy_shapes.py for why the values live in `toy`).
toy = dict(
    instance_data='diffkd-toy/sks-circle',
    instance_prompt='a sks circle',
    class_prompt='a circle',
    train_pipeline=[
        dict(type='ResizeShortEdge', size=32),
        dict(type='RandomCropWithCoords', size=32),
        dict(type='RandomHorizontalFlip', prob=0.5),
        dict(type='ComputeTimeIds'),
        dict(type='NormalizeRGB'),
        dict(type='PackInputs', keys=['img', 'text', 'time_ids']),
    ])
