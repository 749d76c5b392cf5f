# Segmind tiny-sd: small-sd without the mid block and the innermost stage.
# distill-sd's pairs (features='distill_sd'): the student's last down stage
# against the teacher's first up stage, student up stage i against teacher
# up stage i+1.
_base_ = './distill_sd_small.py'
model = dict(compression=dict(type='SegmindTiny'), features='distill_sd')
