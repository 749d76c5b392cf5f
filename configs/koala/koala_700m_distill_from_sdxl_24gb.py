# configs/koala/koala_700m_distill_from_sdxl.py on one 24 GB card, batch 1 at
# 1024 px: planned at 12.3 GiB by tools/analysis_tools/memory_plan.py
# (docs/performance.md, "SDXL-family distillation on 24 GB"). Teacher in
# bf16, gradient checkpointing, 8-bit AdamW (`pip install bitsandbytes`)
# and a latent + text-embedding cache (configs/_base_/memory/
# sdxl_distill_24gb.py), filled once with
#   python tools/cache_latents.py configs/koala/koala_700m_distill_from_sdxl_24gb.py
_base_ = [
    './koala_700m_distill_from_sdxl.py',
    '../_base_/memory/sdxl_distill_24gb.py',
]
model = {{_base_.sdxl_24gb.model}}
optim_wrapper = {{_base_.sdxl_24gb.optim_wrapper}}
train_dataloader = {{_base_.sdxl_24gb.train_dataloader}}
default_hooks = {{_base_.sdxl_24gb.default_hooks}}
