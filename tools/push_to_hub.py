"""Upload a finished run to the Hugging Face Hub as a pipeline repo:
``python tools/push_to_hub.py WORK_DIR REPO_ID [--dry-run]``.

Stages the same folder ``tools/export_pipeline.py`` writes (pipeline
components, LoRA in ``lora/``, model card naming REPO_ID), adds the files
given with ``--extra`` (e.g. a single-file checkpoint or a kohya LoRA),
and uploads it with ``huggingface_hub.upload_folder``. ``--dry-run`` lists
what would be uploaded, with sizes, and prints the model card; it needs
no network and no token.
"""
import argparse
import os.path as osp
import shutil
import tempfile

from diffkd.export import export_pipeline_folder, upload_plan


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('work_dir', help='work dir of a run, or an export folder')
    p.add_argument('repo_id', help='hub repo, e.g. me/toy-ssd-1b')
    p.add_argument('--dry-run', action='store_true',
                   help='list the files that would be uploaded; upload '
                   'nothing')
    p.add_argument('--private', action='store_true')
    p.add_argument('--base-model', default=None,
                   help='override the base pipeline recorded in the export')
    p.add_argument('--fuse-lora', action='store_true',
                   help='merge a LoRA export into the uploaded weights')
    p.add_argument('--extra', nargs='*', default=[],
                   help='more files to upload at the repo\'s top level')
    p.add_argument('--commit-message', default='Upload diffkd export')
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    for path in args.extra:
        if not osp.isfile(path):
            raise SystemExit(f'--extra {path}: no such file')
    with tempfile.TemporaryDirectory(prefix='diffkd-push-') as tmp:
        stage = osp.join(tmp, 'repo')
        export_pipeline_folder(args.work_dir, stage,
                               base_model=args.base_model,
                               fuse_lora=args.fuse_lora,
                               repo_id=args.repo_id)
        for path in args.extra:
            shutil.copy2(path, osp.join(stage, osp.basename(path)))
        plan = upload_plan(stage)
        total = sum(size for _, size in plan)
        print(f'{"would upload" if args.dry_run else "uploading"} '
              f'{len(plan)} files ({total / 1e6:.1f} MB) to {args.repo_id}:')
        for rel, size in plan:
            print(f'  {rel}  {size}')
        if args.dry_run:
            with open(osp.join(stage, 'README.md')) as f:
                print('\nREADME.md:\n' + f.read())
            return plan
        from huggingface_hub import create_repo, upload_folder
        create_repo(args.repo_id, private=args.private, exist_ok=True)
        upload_folder(repo_id=args.repo_id, folder_path=stage,
                      commit_message=args.commit_message)
        print(f'uploaded to https://huggingface.co/{args.repo_id}')
        return plan


if __name__ == '__main__':
    main()
