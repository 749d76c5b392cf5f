"""Pre-flight check of a run config: every ``type=`` the Runner will build
resolves, and every key of a component is one its class takes.

mmengine's Runner fails on such mistakes deep inside its build methods
(``KeyError: 'AdamWW is not in the mmengine::optimizer registry'``,
``TypeError: __init__() got an unexpected keyword argument``) and only when
it reaches them. :func:`check_config` walks the whole config first, with
the registries the Runner will use (the config's ``default_scope`` and
mmengine's roots above it), and raises one error naming the config key
(``model.student.type``), what is wrong and the closest valid names.
Nothing is built and nothing outside diffkd is changed.
"""
import ast
import inspect
import textwrap
from typing import Any, Iterable, List, Optional, Sequence

import torch.nn as nn
from mmengine import registry as mm
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope, Registry

from diffkd.registry import (COMPRESSIONS, ConfigKeyError, UnknownTypeError,
                             check_renamed, closest_names, registered_names,
                             unknown_keys_message, unknown_type_message)

__all__ = ['check_config', 'accepted_keys']

# Every kind a nested ``type=`` may name, in the order a name is looked for.
_ALL_KINDS = (mm.MODELS, COMPRESSIONS, mm.DATASETS, mm.TRANSFORMS,
              mm.DATA_SAMPLERS, mm.FUNCTIONS, mm.HOOKS, mm.LOOPS,
              mm.OPTIMIZERS, mm.OPTIM_WRAPPERS, mm.PARAM_SCHEDULERS,
              mm.METRICS, mm.EVALUATOR, mm.VISUALIZERS, mm.VISBACKENDS,
              mm.WEIGHT_INITIALIZERS, mm.TASK_UTILS)
# __init__s that take no config key: a chain of ``super().__init__(**kwargs)``
# ends there (nn.Module's only rejects keys).
_NO_KEYS = (object, nn.Module)


def check_config(cfg) -> None:
    """Check ``cfg`` (a :class:`~mmengine.config.Config` or dict) before a
    Runner is built from it.

    Raises :class:`~diffkd.registry.UnknownTypeError` (a ``KeyError``) for a
    ``type`` (or ``runner_type``, optimizer wrapper ``constructor``) that
    does not resolve, or that mmengine looks up outside ``default_scope``
    without its ``diffkd.`` prefix, and
    :class:`~diffkd.registry.ConfigKeyError` (a ``TypeError``) for a key the
    class cannot take; each message ends with the config key, e.g.
    ``(config key model.student.type)``. Keys of a class that passes
    ``**kwargs`` on to anything but its base class's ``__init__`` are not
    judged.
    """
    # mmengine registers its own hooks, loops, optimizers... on import.
    import mmengine.runner  # noqa: F401
    _Checker(cfg).run()


class _Checker:

    def __init__(self, cfg):
        self.cfg = cfg if isinstance(cfg, (Config, ConfigDict)) else \
            ConfigDict(cfg)
        # Runner.from_cfg's default.
        self.scope = self.cfg.get('default_scope', 'mmengine')

    # ----------------------------------------------------------- the walk
    def run(self):
        with DefaultScope.overwrite_default_scope(self.scope):
            self._run()

    def _run(self):
        cfg = self.cfg
        if cfg.get('runner_type') is not None:
            self.component(cfg, '', mm.RUNNERS, type_key='runner_type',
                           check_keys=False)
        if _is_dict(cfg.get('model')):
            self.component(cfg['model'], 'model', mm.MODELS)
            self.walk_model(cfg['model'], 'model')
        for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            if _is_dict(cfg.get(key)):
                self.dataloader(cfg[key], key)
        for name, hook in _items(cfg.get('default_hooks')):
            self.component(hook, f'default_hooks.{name}', mm.HOOKS,
                           extra=('priority', ))
        for i, hook in enumerate(_sequence(cfg.get('custom_hooks'))):
            self.component(hook, f'custom_hooks[{i}]', mm.HOOKS,
                           extra=('priority', ))
        self.loops()
        if _is_dict(cfg.get('optim_wrapper')):
            self.optim_wrapper(cfg['optim_wrapper'], 'optim_wrapper')
        self.param_schedulers(cfg.get('param_scheduler'), 'param_scheduler')
        for key in ('val_evaluator', 'test_evaluator'):
            self.evaluator(cfg.get(key), key)
        vis = cfg.get('visualizer')
        if _is_dict(vis):
            self.component(vis, 'visualizer', mm.VISUALIZERS)
            for i, backend in enumerate(_sequence(vis.get('vis_backends'))):
                self.component(backend, f'visualizer.vis_backends[{i}]',
                               mm.VISBACKENDS)
        log_processor = cfg.get('log_processor')
        if _is_dict(log_processor):
            from mmengine.runner import LogProcessor
            self.component(log_processor, 'log_processor', mm.LOG_PROCESSORS,
                           default_type=LogProcessor)
        # Runner.wrap_model: only distributed runs wrap the model.
        if _is_dict(cfg.get('model_wrapper_cfg')) and \
                cfg.get('launcher', 'none') != 'none':
            self.component(cfg['model_wrapper_cfg'], 'model_wrapper_cfg',
                           mm.MODEL_WRAPPERS, root_only='model wrappers',
                           default_type='MMDistributedDataParallel')
        if _is_dict(cfg.get('strategy')):
            self.strategy(cfg['strategy'], 'strategy')

    def walk_model(self, cfg, path):
        """The dicts a model passes on to its own builds (student, losses,
        recipe, data preprocessor)."""
        for key, value, where in _children(cfg, path):
            if key == 'init_cfg':  # mmengine's weight initialisers
                for i, init in enumerate(_sequence(value) or [value]):
                    if _is_dict(init) and 'type' in init:
                        self.component(init, where if _is_dict(value) else
                                       f'{where}[{i}]',
                                       mm.WEIGHT_INITIALIZERS,
                                       check_keys=False)
            elif _is_dict(value) and 'type' in value:
                kinds = (COMPRESSIONS, ) if key == 'compression' else \
                    (mm.MODELS, COMPRESSIONS)
                kind = self.nested(value, where, kinds, certain=True)
                if kind is not None:
                    self.walk_model(value, where)
            elif _is_dict(value) or _sequence(value):
                self.walk_model(value, where)

    def walk_dataset(self, cfg, path):
        """A dataset's pipeline, wrapped datasets and other parts."""
        for key, value, where in _children(cfg, path):
            if key in ('pipeline', 'transforms'):
                for i, item in enumerate(_sequence(value)):
                    if _is_dict(item):
                        self.component(item, f'{where}[{i}]', mm.TRANSFORMS)
                        self.walk_dataset(item, f'{where}[{i}]')
            elif key in ('dataset', 'datasets') and (
                    _is_dict(value) or _sequence(value)):
                items = [(where, value)] if _is_dict(value) else \
                    [(f'{where}[{i}]', v) for i, v in enumerate(value)]
                for at, item in items:
                    if _is_dict(item) and 'type' in item:
                        self.component(item, at, mm.DATASETS)
                        self.walk_dataset(item, at)
            elif _is_dict(value) and 'type' in value:
                # e.g. a cached dataset's encoder model and source dataset
                kind = self.nested(value, where, _ALL_KINDS, certain=False)
                if kind is mm.MODELS:
                    self.walk_model(value, where)
                elif kind is not None:
                    self.walk_dataset(value, where)

    def dataloader(self, cfg, path):
        if _is_dict(cfg.get('dataset')):
            self.component(cfg['dataset'], f'{path}.dataset', mm.DATASETS)
            self.walk_dataset(cfg['dataset'], f'{path}.dataset')
        for key in ('sampler', 'batch_sampler'):
            if _is_dict(cfg.get(key)):
                self.component(cfg[key], f'{path}.{key}', mm.DATA_SAMPLERS)
        # Runner.build_dataloader: FUNCTIONS.get in mmengine's root.
        for key in ('collate_fn', 'worker_init_fn'):
            if _is_dict(cfg.get(key)):
                self.component(cfg[key], f'{path}.{key}', mm.FUNCTIONS,
                               root_only='functions')

    def loops(self):
        from mmengine.runner import (EpochBasedTrainLoop, IterBasedTrainLoop,
                                     TestLoop, ValLoop)
        train = self.cfg.get('train_cfg')
        if _is_dict(train) and ('type' in train or 'by_epoch' in train):
            self.component(
                train, 'train_cfg', mm.LOOPS, extra=('by_epoch', ),
                default_type=EpochBasedTrainLoop
                if train.get('by_epoch') else IterBasedTrainLoop)
        for key, default in (('val_cfg', ValLoop), ('test_cfg', TestLoop)):
            if _is_dict(self.cfg.get(key)):
                self.component(self.cfg[key], key, mm.LOOPS,
                               default_type=default)

    def optim_wrapper(self, cfg, path):
        from mmengine.optim import DefaultOptimWrapperConstructor
        from torch.optim import Optimizer
        if isinstance(cfg.get('optimizer'), Optimizer):
            return
        if 'optimizer' not in cfg and 'constructor' not in cfg:
            return  # several wrappers: mmengine takes built ones only
        constructor = cfg.get('constructor', 'DefaultOptimWrapperConstructor')
        cls = self.component(dict(type=constructor), path,
                             mm.OPTIM_WRAPPER_CONSTRUCTORS, check_keys=False,
                             type_key_path=f'{path}.constructor')
        if not (inspect.isclass(cls)
                and issubclass(cls, DefaultOptimWrapperConstructor)):
            return  # a constructor of its own reads the config its own way
        self.component(cfg, path, mm.OPTIM_WRAPPERS,
                       default_type='OptimWrapper',
                       extra=('optimizer', 'constructor', 'paramwise_cfg'))
        if _is_dict(cfg.get('optimizer')):
            self.component(cfg['optimizer'], f'{path}.optimizer',
                           mm.OPTIMIZERS)

    def param_schedulers(self, value, path):
        if _is_dict(value) and 'type' not in value:
            # one list per optimizer wrapper of an OptimWrapperDict
            for name, sub in value.items():
                self.param_schedulers(sub, f'{path}.{name}')
            return
        items = [(path, value)] if _is_dict(value) else \
            [(f'{path}[{i}]', v) for i, v in enumerate(_sequence(value))]
        for at, item in items:
            self.component(item, at, mm.PARAM_SCHEDULERS,
                           extra=('convert_to_iter_based', ))

    def evaluator(self, value, path):
        if _is_dict(value) and 'metrics' in value:
            self.component(value, path, mm.EVALUATOR, default_type='Evaluator')
            metrics = value['metrics']
            items = [(f'{path}.metrics', metrics)] if _is_dict(metrics) else \
                [(f'{path}.metrics[{i}]', m)
                 for i, m in enumerate(_sequence(metrics))]
        elif _is_dict(value):
            items = [(path, value)]
        else:
            items = [(f'{path}[{i}]', m)
                     for i, m in enumerate(_sequence(value))]
        for at, metric in items:
            self.component(metric, at, mm.METRICS)

    def strategy(self, cfg, path):
        # FlexibleRunner builds its strategy before default_scope applies.
        self.component(cfg, path, mm.STRATEGIES, root_only='strategies')
        wrapper = cfg.get('model_wrapper')
        if _is_dict(wrapper) and 'type' in wrapper:
            self.component(wrapper, f'{path}.model_wrapper',
                           mm.MODEL_WRAPPERS)
            policy = wrapper.get('auto_wrap_policy')
            if _is_dict(policy):
                self.component(policy, f'{path}.model_wrapper.'
                               'auto_wrap_policy', mm.FUNCTIONS)

    # ------------------------------------------------------ one component
    def resolve(self, root: Registry, name: Optional[str], scope=None):
        """What ``root.build`` would find for ``name`` (None: nothing),
        and the registry it looks in."""
        if scope is None and not _in_tree(root, self.scope):
            # What switch_scope_and_registry falls back to, without its
            # warning (e.g. mmengine's weight initialisers: no diffkd child).
            return (root.get(name) if name else None), root
        with root.switch_scope_and_registry(scope) as registry:
            return (registry.get(name) if name else None), registry

    def component(self, cfg, path: str, root: Registry, *,
                  type_key: str = 'type', default_type: Any = None,
                  extra: Sequence[str] = (), check_keys: bool = True,
                  root_only: Optional[str] = None,
                  type_key_path: Optional[str] = None):
        """Check one config dict that ``root`` builds; return its class.

        ``root_only``: mmengine looks the name up in ``root`` itself, not in
        the default scope (the plural it looks up, for the message).
        ``extra``: keys the Runner takes out before building.
        """
        if not _is_dict(cfg):
            return None
        obj_type = cfg.get(type_key, default_type)
        at = type_key_path or _join(path, type_key)
        if obj_type is None:
            registry = self.resolve(root, None, cfg.get('_scope_'))[1]
            raise UnknownTypeError(_at(
                f'{path} names no {registry.name} to build: give it '
                f"{type_key}=..., one of {_shown(registry)}", [at]))
        if isinstance(obj_type, str):
            obj, registry = self.resolve(root, obj_type, cfg.get('_scope_'))
            check_renamed(cfg, registry)
            if obj is None:
                raise UnknownTypeError(
                    _at(unknown_type_message(obj_type, registry), [at]))
            if root_only and root.get(obj_type) is None:
                raise UnknownTypeError(_at(
                    f'{registry.name} type {obj_type!r} is registered in '
                    f'scope {registry.scope!r}, but mmengine looks '
                    f'{root_only} up outside the default scope: write '
                    f"{type_key}='{registry.scope}.{obj_type}'", [at]))
        elif callable(obj_type):
            obj = obj_type
        else:
            raise UnknownTypeError(_at(
                f'{type_key} must name a registered {root.name} or be a '
                f'class, not {obj_type!r}', [at]))
        if check_keys:
            self.keys(obj, cfg, path, skip=(type_key, '_scope_', *extra))
        return obj

    def nested(self, cfg, path, kinds: Iterable[Registry], certain: bool):
        """A ``type=`` dict inside a component: the first of ``kinds`` that
        knows its type (None if none). Unknown everywhere: an error when the
        position is ``certain`` or some kind has a close name."""
        obj_type = cfg.get('type')
        if not isinstance(obj_type, str):
            return None
        kinds = list(kinds)
        for kind in kinds:
            obj, _ = self.resolve(kind, obj_type, cfg.get('_scope_'))
            if obj is not None:
                if kind in (mm.MODELS, COMPRESSIONS, mm.DATASETS,
                            mm.TRANSFORMS):
                    # built with the dict's keys as arguments
                    self.keys(obj, cfg, path, skip=('type', '_scope_'))
                return kind
        key = mm.MODELS.split_scope_key(obj_type)[1]
        for kind in kinds:
            registry = self.resolve(kind, obj_type, cfg.get('_scope_'))[1]
            if closest_names(key, registered_names(registry)):
                break
        else:
            if not certain:
                return None
            registry = self.resolve(kinds[0], obj_type, cfg.get('_scope_'))[1]
        raise UnknownTypeError(_at(unknown_type_message(obj_type, registry),
                                   [_join(path, 'type')]))

    def keys(self, obj, cfg, path, skip: Sequence[str]):
        valid = accepted_keys(obj)
        if valid is None:
            return
        bad = [k for k in cfg if k not in skip and k not in valid]
        if bad:
            name = getattr(obj, '__name__', repr(obj))
            raise ConfigKeyError(
                _at(unknown_keys_message(name, bad, valid, cfg),
                    [_join(path, k) for k in bad]))


# ------------------------------------------------------------ signatures
def accepted_keys(obj) -> Optional[List[str]]:
    """The keyword arguments ``obj(...)`` accepts, or None when that cannot
    be told from its signature.

    A class whose ``__init__`` takes ``**kwargs`` counts when every use of
    them is ``super().__init__(..., **kwargs)`` (the base's parameters are
    then accepted too, up the MRO) or a look-up of a literal key
    (``kwargs.pop('x')``, ``'x' in kwargs``); ``**kwargs`` going anywhere
    else makes the answer None.
    """
    if not inspect.isclass(obj):
        found = _signature(obj)
        return None if found is None or found[1] else found[0]
    names: List[str] = []

    def add(more):
        names.extend(n for n in dict.fromkeys(more) if n not in names)

    stored = _stored_kwargs()
    for owner in [c for c in obj.__mro__ if '__init__' in vars(c)]:
        if owner in _NO_KEYS:
            return names
        init = vars(owner)['__init__']
        found = _signature(init)
        if found is None:
            return None
        params, var_keyword = found
        add(params[1:])  # not self
        if var_keyword is None:
            return names
        if owner in stored:
            add(stored[owner])
            return names
        read = _forwarded(init, var_keyword)
        if read is None:
            return None
        add(read)
    return names


def _stored_kwargs() -> dict:
    """Classes that keep ``**kwargs`` for a later call: the keys that call
    can take besides those the class passes itself."""
    from mmengine.hooks import CheckpointHook

    # Runner.save_checkpoint(**kwargs) at the first save, with every
    # parameter it has already set: any key fails there, hours in.
    return {CheckpointHook: ()}


def _signature(func):
    """(keyword-capable parameter names, name of ``**kwargs`` or None)."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature
        return None
    names = [p.name for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    var = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
    return names, var


def _forwarded(init, var: str) -> Optional[List[str]]:
    """The literal keys ``init`` reads from ``**var``, when all else it does
    with them is hand them to ``super().__init__``; None otherwise."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(init)))
    except (OSError, TypeError, SyntaxError):
        return None
    func = tree.body[0] if tree.body else None
    if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    parent = {child: node for node in ast.walk(func)
              for child in ast.iter_child_nodes(node)}
    forwarded, read = False, []
    for node in ast.walk(func):
        if not (isinstance(node, ast.Name) and node.id == var):
            continue
        up = parent.get(node)
        if isinstance(up, ast.keyword) and up.arg is None:
            if not _is_super_init(parent.get(up)):
                return None
            forwarded = True
            continue
        key = _literal_key(node, up, parent)
        if key is None:
            return None
        read.append(key)
    return read if forwarded else None


def _is_super_init(call) -> bool:
    """``super().__init__(...)`` or a base named explicitly,
    ``Base.__init__(self, ...)`` (both reach a class up the MRO)."""
    if not (isinstance(call, ast.Call)
            and isinstance(call.func, ast.Attribute)
            and call.func.attr == '__init__'):
        return False
    owner = call.func.value
    if isinstance(owner, ast.Call):
        return isinstance(owner.func, ast.Name) and owner.func.id == 'super'
    return (isinstance(owner, ast.Name) and bool(call.args)
            and isinstance(call.args[0], ast.Name)
            and call.args[0].id == 'self')


def _literal_key(node, up, parent) -> Optional[str]:
    """'x' for ``kwargs['x']``, ``kwargs.get/pop/setdefault('x', ...)`` and
    ``'x' in kwargs``."""

    def text(c):
        return c.value if isinstance(c, ast.Constant) and \
            isinstance(c.value, str) else None

    if isinstance(up, ast.Subscript) and up.value is node:
        return text(up.slice)
    if isinstance(up, ast.Attribute) and up.value is node and \
            up.attr in ('get', 'pop', 'setdefault'):
        call = parent.get(up)
        if isinstance(call, ast.Call) and call.func is up and call.args:
            return text(call.args[0])
        return None
    if isinstance(up, ast.Compare) and len(up.ops) == 1 and \
            isinstance(up.ops[0], (ast.In, ast.NotIn)) and \
            up.comparators[0] is node:
        return text(up.left)
    return None


# --------------------------------------------------------------- helpers
def _in_tree(registry: Registry, scope: str) -> bool:
    return registry.scope == scope or any(
        _in_tree(child, scope) for child in registry.children.values())


def _is_dict(value) -> bool:
    return isinstance(value, (dict, Config))


def _sequence(value) -> list:
    return list(value) if isinstance(value, (list, tuple)) else []


def _items(value):
    return [(k, v) for k, v in value.items()] if _is_dict(value) else []


def _children(cfg, path):
    """(key, value, key path) of a dict's values or a list's items."""
    if _is_dict(cfg):
        return [(k, v, _join(path, k)) for k, v in cfg.items()
                if k not in ('type', '_scope_')]
    return [(None, v, f'{path}[{i}]') for i, v in enumerate(_sequence(cfg))]


def _join(path: str, key) -> str:
    return f'{path}.{key}' if path else str(key)


def _at(message: str, paths: List[str]) -> str:
    return f'{message} (config key{"s" if len(paths) > 1 else ""} ' \
           f'{", ".join(paths)})'


def _shown(registry: Registry, limit: int = 40) -> str:
    names = registered_names(registry)
    return ', '.join(names[:limit]) + (
        f', ... ({len(names) - limit} more)' if len(names) > limit else '')
