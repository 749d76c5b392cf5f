"""Write a finished run as a complete diffusers pipeline folder:
``python tools/export_pipeline.py WORK_DIR OUT_DIR``.

A distilled student's run exports only its UNet (``final/unet``); this puts
it together with the base model's VAE, text encoders and scheduler, so the
student loads like a hub model (``DiffusionPipeline.from_pretrained(OUT)``,
then e.g. ``pipe.load_lora_weights(...)``). A LoRA run's adapter is fused
into the weights only with ``--fuse-lora``; otherwise it is left out.
"""
import argparse

from diffkd.apis import export_pipeline


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('work_dir', help='work dir of a run, or an export folder')
    p.add_argument('out_dir', help='folder to write (must not exist)')
    p.add_argument('--base-model', default=None,
                   help='override the base pipeline recorded in the export')
    p.add_argument('--fuse-lora', action='store_true',
                   help='merge a LoRA export into the saved weights')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    export_pipeline(args.work_dir, args.out_dir, base_model=args.base_model,
                    fuse_lora=args.fuse_lora)
    print(f'wrote {args.out_dir}')


if __name__ == '__main__':
    main()
