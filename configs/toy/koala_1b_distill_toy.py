_base_ = './ssd_1b_distill_toy.py'
model = dict(
    compression=dict(type='KOALA1B'),
    features='self_attention',
    loss_weights=dict(task=1.0, output=1.0, feature=1.0))
