"""The diffkd subpackages form layers: no import cycle between them.

Every ``import`` statement counts, at module level or inside a function:
a function-level import that only dodges an import-time cycle is still a
cycle in the design (and runs the other package's import at call time).
Names imported from a package's ``__init__`` count towards that package.
String imports (registry ``locations``, ``importlib``) are not seen.
"""
import ast
import os
import os.path as osp
from collections import defaultdict
from typing import Dict, List, Set, Tuple

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))

Edges = Dict[Tuple[str, str], List[str]]


def _modules(root: str) -> Dict[str, str]:
    """Dotted module name -> file, for every .py file under ``root``."""
    base = osp.dirname(root)
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith(('.', '_')))
        for name in files:
            if name.endswith('.py'):
                path = osp.join(folder, name)
                dotted = osp.relpath(path, base)[:-3].replace(os.sep, '.')
                if dotted.endswith('.__init__'):
                    dotted = dotted[:-len('.__init__')]
                found[dotted] = path
    return found


def _imported(node, module: str, is_package: bool,
              modules: Dict[str, str]) -> List[str]:
    """Modules an import statement in ``module`` reads."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:  # relative: resolve against the importing package
        package = module if is_package else module.rpartition('.')[0]
        parts = package.split('.')
        base = '.'.join(parts[:len(parts) - node.level + 1])
        source = base + ('.' + node.module if node.module else '')
    else:
        source = node.module
    # `from pkg import sub` reads the submodule; `from pkg import name`
    # reads pkg/__init__.py.
    out = []
    for alias in node.names:
        sub = f'{source}.{alias.name}'
        out.append(sub if sub in modules else source)
    return out


def import_graph(root: str, top: str) -> Edges:
    """Edges between the units of package ``top`` (its subpackages and
    top-level modules; the package's own ``__init__`` is the unit ``top``)
    with the ``file:line`` of every import that makes them."""
    modules = _modules(root)

    def unit(name: str) -> str:
        return '.'.join(name.split('.')[:2])

    edges: Edges = defaultdict(list)
    for module, path in modules.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith('__init__.py')
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _imported(node, module, is_package, modules):
                if target != top and not target.startswith(top + '.'):
                    continue
                a, b = unit(module), unit(target)
                if a != b:
                    where = (f'{osp.relpath(path, osp.dirname(root))}:'
                             f'{node.lineno}')
                    if where not in edges[(a, b)]:
                        edges[(a, b)].append(where)
    return dict(edges)


def cycles(edges: Edges) -> List[List[str]]:
    """The strongly connected components with more than one unit."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found = []

    def visit(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(set(graph) | {b for _, b in edges}):
        if v not in index:
            visit(v)
    return found


def describe(cycle: List[str], edges: Edges) -> str:
    inner = [f'  {a} -> {b}: {", ".join(where)}'
             for (a, b), where in sorted(edges.items())
             if a in cycle and b in cycle]
    return ' <-> '.join(cycle) + '\n' + '\n'.join(inner)


def test_diffkd_subpackages_have_no_import_cycle():
    edges = import_graph(osp.join(REPO, 'diffkd'), 'diffkd')
    # The graph is read, not empty: known layers are there.
    assert ('diffkd.evaluation', 'diffkd.toy') in edges
    assert ('diffkd.toy', 'diffkd.utils') in edges
    found = cycles(edges)
    assert not found, (
        'import cycles between diffkd subpackages (move the shared piece '
        'to the lower layer):\n' +
        '\n'.join(describe(c, edges) for c in found))


@pytest.mark.parametrize('lower,upper', [
    ('diffkd.utils', 'diffkd.toy'),
    ('diffkd.models', 'diffkd.toy'),
])
def test_lower_layers_do_not_know_the_toy_world(lower, upper):
    # Hub resolution does not know the toy builders, compression and the
    # diffusion models do not import toy code.
    edges = import_graph(osp.join(REPO, 'diffkd'), 'diffkd')
    assert (lower, upper) not in edges, edges[(lower, upper)]


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cycle_through_a_function_level_relative_import_is_found(tmp_path):
    pkg = tmp_path / 'pkg'
    _write(pkg / '__init__.py', '')
    _write(pkg / 'low' / '__init__.py', 'from .core import f\n')
    _write(pkg / 'low' / 'core.py',
           'def f():\n    from ..high.mod import g\n    return g\n')
    _write(pkg / 'high' / '__init__.py', '')
    _write(pkg / 'high' / 'mod.py', 'from pkg.low import f\ng = 1\n')
    _write(pkg / 'other.py', 'from . import low\n')
    edges = import_graph(str(pkg), 'pkg')
    assert edges[('pkg.low', 'pkg.high')] == ['pkg/low/core.py:2']
    assert edges[('pkg.high', 'pkg.low')] == ['pkg/high/mod.py:1']
    assert edges[('pkg.other', 'pkg.low')] == ['pkg/other.py:1']
    assert cycles(edges) == [['pkg.high', 'pkg.low']]
    assert 'pkg/low/core.py:2' in describe(['pkg.high', 'pkg.low'], edges)


def test_analysis_is_the_top_layer():
    # The benchmarks and scores use the library; the library never reaches
    # up into them.
    edges = import_graph(osp.join(REPO, 'diffkd'), 'diffkd')
    assert ('diffkd.analysis', 'diffkd.apis') in edges
    users = {a: where for (a, b), where in edges.items()
             if b == 'diffkd.analysis'}
    assert not users, users
