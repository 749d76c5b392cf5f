# The released SSD-1B distilled further from SDXL: the pretrained student is
# loaded with from_pretrained and checked against the SSD1B recipe, which
# also gives the feature pairs.
_base_ = './ssd_1b_distill_from_sdxl.py'
model = dict(
    student_init='pretrained',
    student_pretrained=dict(name_or_path='segmind/SSD-1B', subfolder='unet'))
