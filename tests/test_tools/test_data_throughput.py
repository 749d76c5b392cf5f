"""tools/analysis_tools/data_throughput.py and the toy shards it reads."""
import json

from mmengine.registry import DefaultScope

from diffkd.datasets import WebDatasetShards
from diffkd.utils.hub import resolve_model_path

from ..conftest import run_tool


def test_toy_shards_hold_square_landscape_and_portrait_shapes(diffkd_home):
    folder = resolve_model_path('diffkd-toy/shapes-shards')
    manifest = json.load(open(f'{folder}/manifest.json'))
    assert manifest['num_samples'] == 512 and len(manifest['shards']) == 16
    assert manifest['pattern'] == '{00000..00015}.tar'
    with DefaultScope.overwrite_default_scope('diffkd'):
        ds = WebDatasetShards(
            'diffkd-toy/shapes-shards/{00000..00015}.tar', batch_size=32,
            pipeline=[dict(type='BucketResizeCrop', buckets='toy')])
    assert len(ds) == 512 // 32  # from the manifest, nothing read
    sizes = [tuple(map(int, k.split('x')))
             for k, n in manifest['size_histogram'].items() for _ in range(n)]
    assert len(sizes) == 512
    assert ds.buckets.histogram(sizes) == {
        '48x32': 192, '32x32': 128, '32x48': 192}
    # The shards hold what the manifest says.
    keys = [s['key'] for b in ds.epoch_batches(0, 0, 1, 0, 1) for s in b]
    assert len(keys) == len(set(keys)) == 512


def test_throughput_per_worker_count(tmp_path, diffkd_home):
    out = tmp_path / 'tp.json'
    report = run_tool('analysis_tools/data_throughput.py', [
        'configs/toy/ssd_1b_distill_shards_toy.py', '--workers', '0', '2',
        '--batches', '3', '--warmup', '1', '--out', str(out),
        '--cfg-options', 'train_dataloader.dataset.batch_size=8'])
    assert json.load(open(out)) == json.loads(json.dumps(report))
    rows = report['results']
    assert [r['num_workers'] for r in rows] == [0, 2]
    for r in rows:
        assert r['samples'] == 3 * 8  # three full batches of one bucket
        assert r['samples_per_s'] == r['samples'] / r['seconds'] > 0
