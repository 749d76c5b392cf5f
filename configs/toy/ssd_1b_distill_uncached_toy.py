# configs/toy/ssd_1b_distill_toy.py with the latent cache switched off:
# every step encodes the toy shapes with the VAE and the text encoders (the
# baseline of docs/performance.md, "Fast by default").
_base_ = ['./ssd_1b_distill_toy.py']
train_dataloader = dict(
    dataset=dict(_base_.toy.train_dataloader.dataset, _delete_=True))
