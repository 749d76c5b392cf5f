"""tools/analysis_tools/benchmark_suite.py: the tiny preset end to end on a
CPU (the gpu preset's code at toy size), its FLOP counts against counts made
here independently, the batch search and the device peak table."""
import json
import os.path as osp
import sys

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import (FlopCounterMode,
                                     sdpa_backward_flop_count,
                                     sdpa_flop_count)

from diffkd.analysis.benchmark_suite import (PRESETS, device_peak,
                                             flop_counter, search_batch,
                                             table_peak)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TEACHERS = dict(ssd_1b='diffkd-toy/sdxl-teacher',
                koala_700m='diffkd-toy/sdxl-teacher',
                bk_sdm_small='diffkd-toy/sd15-teacher')


@pytest.fixture(scope='module')
def suite(tmp_path_factory, diffkd_home):
    out = tmp_path_factory.mktemp('suite')
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis_tools'))
    try:
        import benchmark_suite as tool
    finally:
        sys.path.pop(0)
    tool.main(['--preset', 'tiny', '--out-dir', str(out)])
    with open(out / 'suite.json') as f:
        result = json.load(f)
    return result, (out / 'suite.md').read_text()


def _plain_count(fn) -> int:
    """torch's own counter, attention as explicit matmuls (math kernel)."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as c:
        fn()
    return c.get_total_flops()


@torch.no_grad()
def _teacher_forward_flops(name: str, pixels: int) -> int:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from diffkd.utils.hub import resolve_model_path
    path = resolve_model_path(name)
    unet = UNet2DConditionModel.from_pretrained(path, subfolder='unet')
    vae = AutoencoderKL.load_config(osp.join(path, 'vae'))
    side = pixels // 2**(len(vae['block_out_channels']) - 1)
    cfg = unet.config
    kwargs = {}
    if cfg.addition_embed_type == 'text_time':
        text = (cfg.projection_class_embeddings_input_dim -
                6 * cfg.addition_time_embed_dim)
        kwargs['added_cond_kwargs'] = dict(
            text_embeds=torch.randn(1, text),
            time_ids=torch.tensor([[pixels] * 2 + [0, 0] + [pixels] * 2]))
    return _plain_count(lambda: unet(
        torch.randn(1, cfg.in_channels, side, side), torch.tensor([500]),
        torch.randn(1, 77, cfg.cross_attention_dim), **kwargs))


@pytest.mark.slow
def test_training_rows_carry_mfu_and_the_flops_behind_it(suite):
    result, _ = suite
    tiny = PRESETS['tiny']
    peak = result['peak']
    assert peak['source'].startswith('measured matmul (float32')
    assert peak['tflops'] > 0
    assert [r['name'] for r in result['train']] == [
        c.name for c in tiny.train]
    for row in result['train']:
        flops = row['flops']
        batch = row['batch_size']
        # the search doubled up to the preset's cap, and timed that batch
        assert [t['batch'] for t in row['batch_search']['tried']] == [1, 2]
        assert row['batch_search']['stopped_by'] == 'max_batch 2'
        assert batch == 2 and flops['counted_at_batch'] == 2
        assert row['flops_per_iter'] == (flops['teacher_forward'] +
                                         flops['student_forward_backward'])
        assert flops['encode'] > 0 and flops['student_forward_backward'] > 0
        # counted at the batch, it is the batch-1 count times the batch:
        # what the gpu preset relies on when it counts at batch 1 only
        for key in ('teacher_forward', 'student_forward_backward',
                    'encode'):
            assert flops[key] == batch * flops['batch1'][key], key
        # the teacher's share, recounted here by torch on its own
        assert flops['batch1']['teacher_forward'] == \
            _teacher_forward_flops(TEACHERS[row['name']], row['resolution'])
        assert row['achieved_tflops'] == pytest.approx(
            row['flops_per_iter'] / row['s_per_iter'] / 1e12)
        assert row['mfu'] > 0
        assert row['mfu'] == pytest.approx(row['achieved_tflops'] /
                                           row['peak_tflops'])
        assert row['peak_tflops'] == peak['tflops']
        assert row['mfu_without_data'] >= row['mfu']
        assert row['img_per_s'] == pytest.approx(batch / row['s_per_iter'])
        assert row['engine_reference_ratio']['time'] > 0
        assert row['reference_s_per_iter'] > 0
        assert row['loss_parity']['abs_diff'] < 1e-4
        assert row['peak_mem_bytes'] > 0


def test_inference_covers_both_families(suite):
    result, _ = suite
    sdxl, sd15 = result['infer']
    assert [r['name'] for r in sdxl['rows']] == [
        'sdxl_teacher', 'ssd_1b', 'segmind_vega', 'koala_1b', 'koala_700m']
    assert [r['name'] for r in sd15['rows']] == [
        'sd15_teacher', 'bk_sdm_base', 'bk_sdm_small', 'bk_sdm_tiny']
    for block in (sdxl, sd15):
        assert block['settings']['steps'] == 2
        assert block['settings']['width_divisor'] == 8
        teacher = block['rows'][0]
        assert teacher['speedup_vs_teacher'] == 1.0
        for row in block['rows'][1:]:
            assert row['params'] < teacher['params']
            assert row['speedup_vs_teacher'] > 0
    assert 'width' in result['note'] and result['torch'] == torch.__version__


def test_markdown_has_every_row_and_the_peak(suite):
    result, md = suite
    peak = result['peak']
    assert f'{peak["tflops"]:.3f} TFLOPS ({peak["source"]})' in md
    for row in result['train']:
        assert f'| {row["name"]} | `{row["config"]}` | 32 | 2 | ' in md
        assert f'| {row["mfu"]:.4f} |' in md
    names = [r['name'] for b in result['infer'] for r in b['rows']]
    for name in names:
        assert f'| {name} | 32 | 2 | ' in md
    # two header lines, then one line a model
    assert md.count('\n| ') == 2 + len(result['train']) + len(names)


def test_cpu_attention_is_counted_as_torch_counts_the_cuda_kernels():
    q, k, v = (torch.randn(2, 3, 16, 8, requires_grad=True)
               for _ in range(3))

    def forward():
        return F.scaled_dot_product_attention(q, k, v)

    with flop_counter() as ours:
        forward()
    # the forward: the two matmuls of the math kernel
    assert ours.get_total_flops() == _plain_count(forward) == \
        2 * (2 * 2 * 3 * 16 * 16 * 8)
    with flop_counter() as ours:
        forward().sum().backward()
    # the backward: torch's formula for its fused CUDA kernels (which
    # recompute the scores: one matmul more than the math kernel's four)
    shape = tuple(q.shape)
    assert ours.get_total_flops() == (
        sdpa_flop_count(shape, shape, shape) +
        sdpa_backward_flop_count(shape, shape, shape, shape)) == \
        (2 + 5) * (2 * 2 * 3 * 16 * 16 * 8)


def test_batch_search_stops_at_out_of_memory_and_at_the_budget():
    def step(n):
        if n > 8:
            raise torch.OutOfMemoryError('CUDA out of memory')
        return 0.1 * n

    found = search_batch(step, 64, lambda n, s: True, log=lambda m: None)
    assert found['batch'] == 8 and found['stopped_by'] == 'out of memory'
    assert found['tried'][-1] == dict(batch=16, oom=True)
    asked = []
    found = search_batch(step, 64, lambda n, s: asked.append((n, s)) or n < 4,
                         log=lambda m: None)
    assert found == dict(batch=2, stopped_by='time budget',
                         tried=[dict(batch=1, s=0.1), dict(batch=2, s=0.2)])
    assert asked == [(2, 0.1), (4, 0.2)]
    with pytest.raises(RuntimeError, match='batch 1 does not fit'):
        search_batch(lambda n: step(99), 64, lambda n, s: True,
                     log=lambda m: None)


@pytest.mark.parametrize('name,tflops', [
    ('NVIDIA H100 80GB HBM3', 989.0), ('NVIDIA H100 PCIe', 756.0),
    ('NVIDIA H200', 989.0), ('NVIDIA A100-SXM4-80GB', 312.0),
    ('NVIDIA L40S', 362.0), ('NVIDIA L4', 121.0),
    ('NVIDIA GeForce RTX 4090', 165.0), ('NVIDIA A10', 125.0),
])
def test_peak_table_matches_device_names(name, tflops):
    assert table_peak(name)[0] == tflops


def test_unknown_device_peak_is_given_or_measured():
    assert table_peak('NVIDIA A10G') is None
    assert table_peak('Tesla T4') is None
    assert device_peak(torch.device('cpu'), 'float32', 12.5) == dict(
        tflops=12.5, source='--peak-tflops')


def test_step_flops_split_teacher_and_student_without_recompute(toy_sd15):
    """count_step_flops on a bare distiller: the teacher's forward, and the
    student's forward and backward as without gradient checkpointing (its
    recomputed forward is not model work), which is switched back on."""
    from diffusers import UNet2DConditionModel
    from mmengine.model import BaseModel
    from mmengine.optim import OptimWrapper

    from diffkd.analysis.benchmark_suite import count_step_flops

    def unet():
        return UNet2DConditionModel.from_pretrained(toy_sd15,
                                                    subfolder='unet')

    class Student(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.unet = unet()

    class Distiller(BaseModel):
        def __init__(self):
            super().__init__()
            self.student, self.teacher = Student(), unet().requires_grad_(
                False)

        def forward(self, inputs, data_samples=None, mode='loss'):
            x, t, ctx = inputs
            with torch.no_grad():
                target = self.teacher(x, t, ctx).sample
            pred = self.student.unet(x, t, ctx).sample
            return dict(loss=F.mse_loss(pred, target))

    model = Distiller()
    student = model.student.unet
    student.enable_gradient_checkpointing()
    inputs = (torch.randn(2, 4, 8, 8), torch.tensor([10, 500]),
              torch.randn(2, 77, student.config.cross_attention_dim))
    wrapper = OptimWrapper(torch.optim.SGD(student.parameters(), lr=0.0))
    flops = count_step_flops(model, wrapper, dict(inputs=inputs))
    assert student.is_gradient_checkpointing

    with torch.no_grad(), flop_counter() as c:
        model.teacher(*inputs)
    assert flops['teacher_forward'] == c.get_total_flops() > 0
    student.disable_gradient_checkpointing()
    with flop_counter() as c:
        student(*inputs).sample.sum().backward()
    assert flops['student_forward_backward'] == c.get_total_flops()
    assert flops['encode'] == 0
    assert flops['step_total'] == (flops['teacher_forward'] +
                                   flops['student_forward_backward'])


def test_tiny_preset_is_the_gpu_preset_at_toy_size():
    """Same cases (each tiny config the toy twin of the gpu one: it
    inherits it) and the same inference lists; sizes, dtype and device
    differ."""
    gpu, tiny = PRESETS['gpu'], PRESETS['tiny']
    assert [c.name for c in gpu.train] == [c.name for c in tiny.train]
    for real, toy in zip(gpu.train, tiny.train):
        assert osp.isfile(real.path) and osp.isfile(toy.path)
        with open(toy.path) as f:
            assert '../' + real.config[len('configs/'):] in f.read()
    assert [a for a, _ in gpu.infer] == [a for a, _ in tiny.infer]
    assert [c.resolution for c in gpu.train] == [1024, 1024, 512]
    assert [px for _, px in gpu.infer] == [1024, 512]
    assert (gpu.infer_steps, gpu.dtype, gpu.device) == (25, 'bfloat16',
                                                        'cuda')
