# configs/toy/ssd_1b_distill_toy.py, which reads precomputed VAE latents and
# text embeddings by default: a step runs no VAE and no text encoder. The
# cache holds 2 random crops/flips per image (with the time_ids each was
# made with) and is filled on first use, or beforehand with
#   python tools/cache_latents.py configs/toy/ssd_1b_distill_cached_toy.py
# Here it is kept in the work_dirs folder named below.
_base_ = ['./ssd_1b_distill_toy.py']
train_dataloader = dict(
    dataset=dict(cache_dir='work_dirs/latent_cache/toy_shapes_sdxl_teacher'))
