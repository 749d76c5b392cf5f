"""The toy world is built by one explicit call; resolving only looks up."""
import os
import os.path as osp

import pytest

from diffkd.toy import build_toy_world, toy_asset_names
from diffkd.utils.hub import (ToyAssetNotBuiltError, build_folder, is_built,
                              resolve_model_path)
from tests.conftest import REPO, run_tool


def test_resolving_an_unbuilt_asset_names_the_build_command(
        tmp_path, monkeypatch):
    home = tmp_path / 'home'
    monkeypatch.setenv('DIFFKD_HOME', str(home))
    monkeypatch.chdir(REPO)
    with pytest.raises(ToyAssetNotBuiltError) as err:
        resolve_model_path('diffkd-toy/sdxl-teacher')
    assert str(err.value).startswith(
        f'toy asset diffkd-toy/sdxl-teacher is not built in '
        f'$DIFFKD_HOME={home} ')
    assert str(err.value).endswith(
        'build it with: python tools/build_toy_world.py --only sdxl-teacher, '
        'or the whole toy world (seconds) with: '
        'python tools/build_toy_world.py')
    # Resolving built nothing.
    assert not osp.exists(home)
    # Elsewhere the command names the tool by its full path.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError,
                       match=r'build it with: python /\S+/build_toy_world\.py'
                       r' --only sd15, '):
        resolve_model_path('diffkd-toy/sd15')
    # Other names pass through untouched.
    assert resolve_model_path('someone/model') == 'someone/model'


def test_cli_builds_what_is_asked_and_resolving_finds_it(
        tmp_path, monkeypatch, capsys):
    home = tmp_path / 'home'
    assert run_tool('build_toy_world.py',
                    ['--only', 'shapes-val', 'sks-circle',
                     '--home', home]) == 0
    out = capsys.readouterr().out
    assert f'[diffkd toy] ready in {home}: shapes-val, sks-circle' in out
    assert sorted(n for n in os.listdir(home / 'toy')
                  if not n.endswith('.lock')) == ['shapes-val', 'sks-circle']
    monkeypatch.setenv('DIFFKD_HOME', str(home))
    folder = resolve_model_path('diffkd-toy/shapes-val')
    assert folder == str(home / 'toy' / 'shapes-val')
    assert len(os.listdir(osp.join(folder, 'images'))) == 90
    with pytest.raises(ToyAssetNotBuiltError,
                       match=r'\(built there: diffkd-toy/shapes-val, '
                       r'diffkd-toy/sks-circle\)$'):
        resolve_model_path('diffkd-toy/shapes')

    assert run_tool('build_toy_world.py', ['--list', '--home', home]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert len(listing) == len(toy_asset_names())
    state = {line.split()[0]: line.split()[1] for line in listing}
    assert state['diffkd-toy/shapes-val'] == 'built'
    assert state['diffkd-toy/sdxl-teacher'] == 'not'


def test_cli_refuses_unknown_assets(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_tool('build_toy_world.py',
                 ['--only', 'sdxl-teachr', '--home', tmp_path])
    assert "invalid choice: 'sdxl-teachr'" in capsys.readouterr().err
    with pytest.raises(KeyError, match="'sdxl-teachr'.*sdxl-teacher"):
        build_toy_world(['sdxl-teachr'], home=str(tmp_path))
    with pytest.raises(SystemExit, match='--only names no teacher'):
        run_tool('build_toy_world.py', ['--retrain-teachers', '--only',
                                        'shapes', '--home', tmp_path])
    assert not osp.exists(tmp_path / 'toy')


def test_a_failed_build_leaves_nothing_that_looks_built(tmp_path):
    path = str(tmp_path / 'toy' / 'thing')

    def broken(out):
        open(osp.join(out, 'half.txt'), 'w').close()
        raise RuntimeError('disk full')

    with pytest.raises(RuntimeError, match='disk full'):
        build_folder(path, broken)
    assert not is_built(path) and not osp.exists(path)
    assert sorted(os.listdir(tmp_path / 'toy')) == ['thing.lock']

    def good(out, text='one'):
        with open(osp.join(out, 'x.txt'), 'w') as f:
            f.write(text)

    waited = []
    assert build_folder(path, good, on_wait=lambda: waited.append(1))
    assert is_built(path) and not waited  # the lock was released
    assert not build_folder(path, lambda out: good(out, 'two'))
    assert build_folder(path, lambda out: good(out, 'two'), rebuild=True)
    with open(osp.join(path, 'x.txt')) as f:
        assert f.read() == 'two'
    assert sorted(os.listdir(tmp_path / 'toy')) == ['thing', 'thing.lock']
