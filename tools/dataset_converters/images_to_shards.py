"""Write an imagefolder or a saved ``datasets`` folder as WebDataset
shards (img2dataset layout) with a manifest.

``python tools/dataset_converters/images_to_shards.py SRC OUT
[--samples-per-shard N] [--prefix P] [--image-column C]
[--caption-column C] [--buckets sdxl sd ...]``

SRC: a folder with ``metadata.jsonl`` or ``metadata.csv`` (``file_name``
and ``text`` columns), or one written by ``Dataset.save_to_disk``.
OUT gets ``00000.tar`` ... and ``manifest.json`` (sample count, shards, a
size histogram, the bucket histogram of each preset). Run it again after
an interruption: complete shards are kept and it goes on with the next.
"""
import argparse
import json
import sys

from diffkd.datasets.buckets import PRESETS
from diffkd.datasets.shard_writer import imagefolder_rows, write_shards


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='imagefolder or saved datasets folder')
    parser.add_argument('out', help='folder for the shards')
    parser.add_argument('--samples-per-shard', type=int, default=1000)
    parser.add_argument('--prefix', default='',
                        help='shard name prefix (PREFIX00000.tar)')
    parser.add_argument('--image-column', default='file_name')
    parser.add_argument('--caption-column', default='text')
    parser.add_argument('--buckets', nargs='+', default=['sdxl', 'sd'],
                        choices=sorted(PRESETS),
                        help='bucket presets of the manifest histograms')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    manifest = write_shards(
        imagefolder_rows(args.src, args.image_column, args.caption_column),
        args.out, args.samples_per_shard, args.prefix, args.buckets)
    summary = {k: manifest[k] for k in ('num_samples', 'num_skipped',
                                        'pattern', 'bucket_histogram')}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
