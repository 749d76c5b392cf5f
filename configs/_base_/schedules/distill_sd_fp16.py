# GPU schedule for SD-1.x/2.x distillation: fp16 autocast (the VAE always
# encodes in fp32), the teacher in fp16 without grad.
_base_ = ['./distill_sdxl_bf16.py']
optim_wrapper = dict(dtype='float16', optimizer=dict(lr=5e-5))
train_cfg = dict(max_iters=50000)
