# Segmind-Vega (0.74B UNet) compressed from SDXL with the layer-level loss.
_base_ = '../ssd_1b/ssd_1b_distill_from_sdxl.py'
model = dict(compression=dict(type='SegmindVega'))
