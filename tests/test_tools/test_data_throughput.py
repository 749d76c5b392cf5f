"""tools/analysis_tools/data_throughput.py and the toy shards it reads."""
import json

from diffkd.datasets import WebDatasetShards
from diffkd.utils.hub import resolve_model_path

from ..conftest import run_tool


def test_toy_shards_hold_square_landscape_and_portrait_shapes(diffkd_home):
    folder = resolve_model_path('diffkd-toy/shapes-shards')
    manifest = json.load(open(f'{folder}/manifest.json'))
    assert manifest['num_samples'] == 512 and len(manifest['shards']) == 16
    assert manifest['bucket_histogram']['toy'] == {
        '48x32': 192, '32x32': 128, '32x48': 192}
    ds = WebDatasetShards('diffkd-toy/shapes-shards/{00000..00015}.tar',
                          batch_size=32)
    assert len(ds) == 512 // 32  # from the manifest, nothing read


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
