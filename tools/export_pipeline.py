"""Write a finished run as a complete diffusers pipeline folder:
``python tools/export_pipeline.py WORK_DIR OUT_DIR``.

The run's export (``final/``: the trained UNet, or a LoRA in ``lora/``)
with the base model's VAE, text encoders, tokenizers and scheduler, a
``model_index.json`` and a ``README.md`` model card (with the scores of
the latest ``tools/test.py`` run of WORK_DIR), so the student loads like a
hub model: ``DiffusionPipeline.from_pretrained(OUT)``. Files are
hard-linked where the file system allows (``--copy``: always copied). A
LoRA stays in ``lora/`` (``pipe.load_lora_weights(OUT, subfolder='lora')``)
unless ``--fuse-lora`` merges it into the weights. See docs/export.md.
"""
import argparse

from diffkd.export import export_pipeline_folder


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('work_dir', help='work dir of a run, or an export folder')
    p.add_argument('out_dir', help='folder to write (must not exist)')
    p.add_argument('--base-model', default=None,
                   help='override the base pipeline recorded in the export')
    p.add_argument('--fuse-lora', action='store_true',
                   help='merge a LoRA export into the saved weights')
    p.add_argument('--copy', action='store_true',
                   help='copy the base components instead of hard-linking')
    p.add_argument('--repo-id', default=None,
                   help='hub repo the model card\'s snippet loads from')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        out = export_pipeline_folder(
            args.work_dir, args.out_dir, base_model=args.base_model,
            fuse_lora=args.fuse_lora, mode='copy' if args.copy else
            'hardlink', repo_id=args.repo_id)
    except FileExistsError as err:
        raise SystemExit(str(err))
    print(f'wrote {out}')


if __name__ == '__main__':
    main()
