"""Importing diffkd changes nothing of mmengine's: its root registries keep
their build functions and their entries, and the classes diffkd extends
(HistoryBuffer, CheckpointLoader's schemes, the Runner) keep their
attributes (mmdet or mmagic code in the same process behaves exactly as
without diffkd)."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO

# mmengine (and mmcv, whose transforms diffkd's build on) register their
# own classes in mmengine's roots when these are imported: they are imported
# before the roots are recorded, so that what changes afterwards is
# diffkd's doing.
LIBRARY_MODULES = [
    'mmengine.runner', 'mmengine.runner._flexible_runner', 'mmengine.hooks',
    'mmengine.optim', 'mmengine.dataset', 'mmengine.evaluator',
    'mmengine.visualization', 'mmengine.model', 'mmengine._strategy',
    'mmcv.transforms'
]
DIFFKD_MODULES = ['diffkd', 'diffkd.apis', 'diffkd.engine', 'diffkd.models',
                  'diffkd.datasets', 'diffkd.evaluation']

SCRIPT = r'''
import importlib, json, sys
from mmengine import registry

for name in {libraries}:
    importlib.import_module(name)
roots = {{name: reg for name, reg in vars(registry).items()
         if isinstance(reg, registry.Registry) and reg.parent is None}}
before = {{name: (reg.build_func, dict(reg.module_dict))
          for name, reg in roots.items()}}
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader, Runner, FlexibleRunner
from mmengine.optim import OptimWrapper
classes = {{'HistoryBuffer': HistoryBuffer, 'Runner': Runner,
           'FlexibleRunner': FlexibleRunner, 'OptimWrapper': OptimWrapper,
           'CheckpointLoader': CheckpointLoader}}
class_before = {{n: dict(vars(c)) for n, c in classes.items()}}
schemes_before = dict(CheckpointLoader._schemes)

for name in {diffkd}:
    importlib.import_module(name)
# diffkd's registries import their modules when first asked: ask them all.
from diffkd import registry as diffkd_registry
for reg in vars(diffkd_registry).values():
    if isinstance(reg, registry.Registry):
        reg.import_from_location()
if sys.argv[1:] == ['control']:  # what the test must catch
    roots['HOOKS'].register_module(name='ControlHook', module=object)
    roots['MODELS'].build_func = lambda *a, **k: None
    HistoryBuffer.__getstate__ = lambda self: {{}}

report = {{}}
for name, reg in roots.items():
    func, entries = before[name]
    report[name] = dict(
        build_func=None if reg.build_func is func else
        getattr(reg.build_func, '__module__', '?') + '.' +
        getattr(reg.build_func, '__qualname__', '?'),
        added={{k: getattr(v, '__module__', '?')
               for k, v in reg.module_dict.items() if k not in entries}},
        replaced=[k for k, v in reg.module_dict.items()
                  if k in entries and entries[k] is not v],
        removed=[k for k in entries if k not in reg.module_dict])
for n, c in classes.items():
    now = vars(c)
    changed = sorted(k for k in set(now) | set(class_before[n])
                     if now.get(k) is not class_before[n].get(k))
    if changed:
        report['class ' + n] = dict(changed=changed)
schemes = CheckpointLoader._schemes
changed = sorted(k for k in set(schemes) | set(schemes_before)
                 if schemes.get(k) is not schemes_before.get(k))
if changed:
    report['CheckpointLoader schemes'] = dict(changed=changed)
print('REPORT ' + json.dumps(report))
'''


def root_changes(*args):
    """{root registry: what importing diffkd changed in it} (empty when
    nothing), from a fresh interpreter."""
    script = SCRIPT.format(libraries=LIBRARY_MODULES,
                           diffkd=DIFFKD_MODULES)
    res = subprocess.run([sys.executable, '-c', script, *args], cwd=REPO,
                         capture_output=True, text=True, timeout=300,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert res.returncode == 0, res.stderr[-4000:]
    line = [x for x in res.stdout.splitlines() if x.startswith('REPORT ')]
    report = json.loads(line[-1][len('REPORT '):])
    assert len(report) >= 20, sorted(report)  # every root of mmengine's
    return {name: {k: v for k, v in change.items() if v}
            for name, change in report.items()
            if any(change.values())}


def test_importing_diffkd_leaves_mmengine_roots_unchanged():
    assert root_changes() == {}


def test_a_changed_root_is_reported():
    changes = root_changes('control')
    assert changes['HOOKS'] == {'added': {'ControlHook': 'builtins'}}
    assert set(changes['MODELS']) == {'build_func'}
    assert changes['class HistoryBuffer'] == {'changed': ['__getstate__']}
    assert set(changes) == {'HOOKS', 'MODELS', 'class HistoryBuffer'}
