"""diffkd.analysis.unet_stats on the meta device: sizes without weights."""
import os.path as osp

from diffusers import UNet2DConditionModel
from mmengine.config import Config

from diffkd.analysis.unet_stats import describe, stats
from diffkd.models.compression.teacher_configs import load_teacher_config
from tests.conftest import REPO


def test_describe_counts_every_parameter_in_its_block():
    config = load_teacher_config('sd15')
    res = describe(config)
    assert res['params'] == 859_520_964  # SD-1.5's UNet
    # blocks plus the stem and head (conv_in, time embedding, conv_out)
    assert res['down_params'] + res['mid_params'] + res['up_params'] < \
        res['params']
    assert [b['type'] for b in res['down']] == [
        'CrossAttnDownBlock2D'] * 3 + ['DownBlock2D']
    assert res['down'][0]['transformer_depths'] == [1, 1]
    unet = UNet2DConditionModel.from_config(dict(
        config, block_out_channels=[32, 64, 64, 64], cross_attention_dim=32,
        attention_head_dim=2, layers_per_block=1, norm_num_groups=8))
    small = describe(unet.config)
    assert small['params'] == sum(p.numel() for p in unet.parameters())
    assert small['up_params'] == sum(p.numel()
                                     for p in unet.up_blocks.parameters())


def test_distillation_config_ratio():
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'bk_sdm',
                                   'bk_sdm_tiny_distill_from_sd14.py'))
    res = stats(cfg)
    assert res['teacher']['params'] == 859_520_964
    assert res['student']['params'] == 323_384_964
    assert res['student']['compression'] == 'BKSDMTiny'
    assert res['student_to_teacher_params'] == round(
        323_384_964 / 859_520_964, 4)
    assert res['student']['mid'] is None  # BK-SDM-Tiny drops the mid block
