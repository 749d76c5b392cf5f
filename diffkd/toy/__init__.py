"""The offline toy world: shapes data, tokenizer, toy pipelines, score and
the cached ``diffkd-toy/<name>`` assets, built by :func:`build_toy_world`
(``python tools/build_toy_world.py``)."""
from .assets import (TOY_ASSETS, build_toy_world, retrain_shipped_teachers,
                     toy_asset_names)

__all__ = [
    'TOY_ASSETS', 'build_toy_world', 'retrain_shipped_teachers',
    'toy_asset_names'
]
