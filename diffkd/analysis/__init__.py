"""What the analysis tools (``tools/analysis_tools/``) compute: training
and inference benchmarks, UNet size statistics, toy scores and the toy KD
ablation. The top layer of diffkd: it uses apis, engine, models and
evaluation, and nothing below imports it. Import the modules themselves
(``from diffkd.analysis.benchmark_train import benchmark_train``): each
pulls in only what it needs."""
