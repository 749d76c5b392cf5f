"""Samples per second of a config's training data pipeline (reading,
decoding, transforms, bucketing, collation), per dataloader worker count:
how many workers keep one GPU fed. ``tools/analysis_tools/
data_throughput.py CONFIG`` prints it."""
import copy
import time
from typing import Dict, List, Sequence

from mmengine.registry import DefaultScope
from mmengine.runner import Runner


def batch_size_of(batch) -> int:
    """Samples in a collated batch."""
    inputs = batch.get('inputs', batch) if isinstance(batch, dict) else batch
    if isinstance(inputs, dict):
        for key in ('img', 'latent_mean', 'text'):
            if key in inputs:
                return len(inputs[key])
    return len(batch)


def measure_throughput(dataloader_cfg: Dict,
                       workers: Sequence[int] = (0, 1, 2),
                       batches: int = 20, warmup: int = 2,
                       seed: int = 0) -> List[Dict]:
    """For each worker count: ``num_workers``, ``startup_s`` (until the
    first ``warmup`` batches arrived: worker start, shard opening, shuffle
    buffer), ``samples_per_s`` and ``batches_per_s`` over the next
    ``batches`` batches; with 0 workers also ``cpu_s_per_sample``."""
    results = []
    for n in workers:
        cfg = copy.deepcopy(dict(dataloader_cfg))
        cfg['num_workers'] = n
        cfg['persistent_workers'] = False
        with DefaultScope.overwrite_default_scope('diffkd'):
            loader = Runner.build_dataloader(cfg, seed=seed)
        start = time.perf_counter()
        it = iter(loader)
        for _ in range(warmup):
            next(it)
        ready, cpu = time.perf_counter(), time.process_time()
        samples = 0
        for _ in range(batches):
            samples += batch_size_of(next(it))
        elapsed = time.perf_counter() - ready
        cpu = time.process_time() - cpu
        del it  # stops the workers
        row = dict(num_workers=n, startup_s=ready - start, batches=batches,
                   samples=samples, seconds=elapsed,
                   samples_per_s=samples / elapsed,
                   batches_per_s=batches / elapsed)
        if n == 0:
            # All the work is in this process: CPU seconds per sample, what
            # a worker needs of one core whatever else the machine runs.
            row['cpu_s_per_sample'] = cpu / samples
        results.append(row)
    return results


# Sizes (h, w) of web photos as img2dataset keeps them with
# --image_size 2048 --resize_mode keep_ratio --resize_only_if_bigger.
PHOTO_SIZES = ((1024, 1024), (1365, 2048), (2048, 1365), (1080, 1920),
               (1200, 1600), (1600, 1200), (768, 1152), (1536, 1024))


def write_photo_like_shards(out_dir: str, num_images: int = 240,
                            samples_per_shard: int = 60,
                            sizes: Sequence = PHOTO_SIZES,
                            quality: int = 90, seed: int = 0) -> Dict:
    """Shards of real-size JPEGs whose decoding costs what a photo's does
    (smooth structure plus fine grain, quality 90: about 0.5 MB each),
    made locally; returns the manifest."""
    import io

    import numpy as np
    from PIL import Image

    from .shard_writer import write_shards
    rng = np.random.default_rng(seed)

    def rows():
        for i in range(num_images):
            h, w = sizes[i % len(sizes)]
            coarse = rng.integers(0, 255, (h // 64 + 1, w // 64 + 1, 3),
                                  dtype=np.uint8)
            img = np.asarray(Image.fromarray(coarse).resize(
                (w, h), Image.BICUBIC), dtype=np.int16)
            img += rng.integers(-12, 13, (h, w, 3), dtype=np.int16)
            buf = io.BytesIO()
            Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(
                buf, 'JPEG', quality=quality)
            yield dict(where=f'photo {i}', caption=f'a photo, number {i}',
                       image=dict(bytes=buf.getvalue(),
                                  path=f'{i:06d}.jpg'))

    return write_shards(rows(), out_dir, samples_per_shard)
