"""diffkd: knowledge distillation, DreamBooth-LoRA and fine-tuning of
Stable Diffusion family models on an mmengine Runner."""
import os
import os.path as osp
import shutil
import sys
import warnings

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def readme():
    with open(osp.join(HERE, 'README.md'), encoding='utf-8') as f:
        return f.read()


def version():
    ns = {}
    with open(osp.join(HERE, 'diffkd', '__init__.py')) as f:
        for line in f:
            if line.startswith('__version__'):
                exec(line, ns)
    return ns['__version__']


def requirements(name):
    path = osp.join(HERE, 'requirements', name)
    with open(path) as f:
        return [
            line.split('#')[0].strip() for line in f
            if line.split('#')[0].strip() and not line.startswith('-r')
        ]


def add_mim_extension():
    """Put configs/ and tools/ in diffkd/.mim (OpenMMLab convention), so
    ``mim train diffkd CONFIG`` finds them from any directory: symlinks for
    editable installs, copies for wheels and regular installs."""
    if 'develop' in sys.argv or 'editable_wheel' in sys.argv:
        mode = 'symlink'
    elif any(cmd in sys.argv for cmd in ('sdist', 'bdist_wheel', 'install',
                                         'build', 'build_py', 'egg_info')):
        mode = 'copy'
    else:
        return
    mim_path = osp.join(HERE, 'diffkd', '.mim')
    os.makedirs(mim_path, exist_ok=True)
    for name in ('configs', 'tools'):
        src = osp.join(HERE, name)
        dst = osp.join(mim_path, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_path), dst)
                continue
            except OSError:
                warnings.warn(f'cannot symlink {src}; copying instead')
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__'))


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='diffkd',
        version=version(),
        description='Distil, personalise and fine-tune Stable Diffusion '
        'family models with an OpenMMLab-style engine',
        long_description=readme(),
        long_description_content_type='text/markdown',
        license='Apache License 2.0',
        python_requires='>=3.9',
        packages=find_packages(exclude=('configs', 'tools', 'tests',
                                        'docs')),
        include_package_data=True,
        package_data={
            'diffkd': [
                '.mim/configs/**/*.py', '.mim/tools/**/*.py',
                '.mim/tools/*.sh', 'models/compression/teacher_configs/*.json',
                'toy/weights/*/*'
            ]
        },
        install_requires=requirements('runtime.txt'),
        extras_require={
            'tests': requirements('tests.txt'),
            'optional': requirements('optional.txt'),
            'memory': requirements('memory.txt'),
        },
        zip_safe=False)
