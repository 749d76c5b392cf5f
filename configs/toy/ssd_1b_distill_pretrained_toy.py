# Toy twin of configs/ssd_1b/ssd_1b_distill.py: a pretrained student UNet
# (a folder written by from_pretrained/save_pretrained, e.g. the final/unet
# of a ssd_1b_distill_toy run) distilled further.
_base_ = './ssd_1b_distill_toy.py'
model = dict(
    student_init='pretrained',
    student_pretrained=dict(
        name_or_path='work_dirs/ssd_1b_distill_toy/final/unet'))
