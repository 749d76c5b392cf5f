"""Registries of diffkd, children of mmengine's root registries.

Every registry names the package that holds its modules in ``locations`` so
that a config with ``default_scope='diffkd'`` resolves each ``type=`` without
importing anything by hand.

Builds through these registries (diffkd's own nested builds: a distiller's
student and losses, a recipe, a cached dataset's encoder) turn mmengine's two
most common config mistakes into errors that say what to write instead: an
unknown ``type`` (:class:`UnknownTypeError` with the closest registered
names) and a key the class does not take (:class:`ConfigKeyError` with the
closest parameter names). mmengine's root registries, which the Runner
builds through, are left as they are: :func:`diffkd.apis.check_config`
checks a whole config before the Runner is built.
"""
import difflib
import functools
import inspect
from typing import Any, Callable, List, Optional

from mmengine.registry import DATA_SAMPLERS as MMENGINE_DATA_SAMPLERS
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import EVALUATOR as MMENGINE_EVALUATOR
from mmengine.registry import FUNCTIONS as MMENGINE_FUNCTIONS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import LOG_PROCESSORS as MMENGINE_LOG_PROCESSORS
from mmengine.registry import LOOPS as MMENGINE_LOOPS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import OPTIMIZERS as MMENGINE_OPTIMIZERS
from mmengine.registry import PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISBACKENDS as MMENGINE_VISBACKENDS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import RUNNERS as MMENGINE_RUNNERS
from mmengine.registry import STRATEGIES as MMENGINE_STRATEGIES
from mmengine.registry import Registry, build_from_cfg


class UnknownTypeError(KeyError):
    """A config ``type`` that no registry in scope knows."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0]) if self.args else ''


class ConfigKeyError(TypeError):
    """A config key that the class named by ``type`` does not take."""


class RenamedTypeError(UnknownTypeError):
    """A config ``type`` written for the diffkd class that had this name
    before it was renamed: the name now builds a library's class."""


def closest_names(word: str, names: List[str],
                  n: int = 3) -> List[str]:
    """Closest names, case-insensitively (``l2loss`` finds ``L2Loss``); a
    word also matches one part of a snake_case name (``wieght`` finds
    ``loss_weight``)."""
    word = word.lower()

    def ratio(a: str) -> float:
        return difflib.SequenceMatcher(None, word, a).ratio()

    scored = []
    for name in names:
        low = name.lower()
        whole = ratio(low)
        parts = [ratio(p) for p in low.split('_') if p] if '_' in low \
            and '_' not in word else []
        best = max([whole] + parts)
        if best >= 0.6:
            scored.append((best, whole, name))
    scored.sort(key=lambda t: (-t[0], -t[1], t[2]))
    return [name for _, _, name in scored[:n]]


def quoted_names(names: List[str]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else \
        ', '.join(quoted[:-1]) + ' or ' + quoted[-1]


def registered_names(registry: Registry) -> List[str]:
    """Every name ``registry.get`` finds without a scope prefix: its own and
    its ancestors'."""
    registry.import_from_location()
    names, reg = set(), registry
    while reg is not None:
        names.update(reg.module_dict)
        reg = reg.parent
    return sorted(names)


def unknown_type_message(obj_type: str, registry: Registry) -> str:
    key = registry.split_scope_key(obj_type)[1]
    names = registered_names(registry)
    what = f'{registry.name} type {obj_type!r} is not registered (scope ' \
           f'{registry.scope!r})'
    close = closest_names(key, names)
    if close:
        return f'{what}; did you mean {quoted_names(close)}?'
    shown = ', '.join(names[:40]) + (
        f', ... ({len(names) - 40} more)' if len(names) > 40 else '')
    return (f'{what}. Registered {registry.name} types: {shown}. A class of '
            f'your own must be imported first: custom_imports=dict('
            f"imports=['your.module'])")


def _parameters(obj_cls: Any) -> Optional[tuple]:
    """(names a call to ``obj_cls`` takes by keyword, whether it also takes
    ``**kwargs``), or None for a callable without a signature."""
    try:
        params = inspect.signature(obj_cls).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return None
    names = [p.name for p in params
             if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names, any(p.kind is p.VAR_KEYWORD for p in params)


def _config_key_message(obj_cls: Any, args: dict,
                        err: TypeError) -> Optional[str]:
    """The message for keys ``obj_cls`` cannot take, or None when it is not
    certain that the TypeError came from them."""
    found = _parameters(obj_cls)
    if found is None:
        return None
    valid, var_keyword = found
    if var_keyword:
        # ``**kwargs`` handed up the class hierarchy (LinearLR ->
        # LinearParamScheduler): a key no ``__init__`` names, and which the
        # error itself names, is the culprit.
        if not inspect.isclass(obj_cls):
            return None
        for base in obj_cls.__mro__[1:]:
            if '__init__' in vars(base) and base is not object:
                more = _parameters(base.__init__)
                valid += [n for n in (more[0] if more else [])
                          if n not in valid and n != 'self']
        bad = [k for k in args if k not in valid and f"'{k}'" in str(err)]
    else:
        # The call failed while binding arguments: every rejected key is
        # the user's.
        bad = [k for k in args if k not in valid]
    if not bad:
        return None
    return unknown_keys_message(getattr(obj_cls, '__name__', repr(obj_cls)),
                                bad, valid, args)


def unknown_keys_message(name: str, bad: List[str], valid: List[str],
                         given) -> str:
    """``NAME got unknown config key 'x' (did you mean 'y'?); NAME takes:
    ...``: the closest of the parameters that ``given`` does not set yet."""
    hints = []
    for key in bad:
        close = closest_names(key, [v for v in valid if v not in given])
        hints.append(f'{key!r}' + (f' (did you mean {quoted_names(close)}?)'
                                   if close else ''))
    return (f'{name} got unknown config key{"s" if len(bad) > 1 else ""} '
            f'{", ".join(hints)}; {name} takes: {", ".join(valid)}')


def _with_hints(build_func: Callable, type_key: str = 'type',
                default_type: Optional[str] = None,
                precheck: Optional[Callable] = None) -> Callable:
    """Wrap a registry build function so that an unknown type or config key
    raises an error naming what was meant.

    The error is only rewritten when it is certain where it came from: the
    type does not resolve in the registry that build looked in, or the
    class's own signature rejects a key of the config (then the call fails
    while binding arguments, before any of the class's code runs), or a
    class taking ``**kwargs`` failed on a key of the config that no
    ``__init__`` in its hierarchy names. A name that a renamed diffkd
    class had (``_RENAMED``) and ``precheck(cfg)`` are checked first.
    """
    if getattr(build_func, 'diffkd_hints', False):
        return build_func

    @functools.wraps(build_func)
    def build(cfg, *args, **kwargs):
        check_renamed(cfg, kwargs.get('registry'))
        if precheck is not None:
            precheck(cfg)
        try:
            return build_func(cfg, *args, **kwargs)
        except (UnknownTypeError, ConfigKeyError):
            raise  # from a nested build, already explained
        except (KeyError, TypeError) as err:
            registry = kwargs.get('registry')
            default_args = args[0] if args else kwargs.get('default_args')
            try:
                message = _explain(err, cfg, registry, default_args,
                                   type_key, default_type)
            except Exception:  # never hide the error behind one of ours
                message = None
            if message is None:
                raise
            new = UnknownTypeError if isinstance(err, KeyError) \
                else ConfigKeyError
            # The original traceback would only point into mmengine.
            raise new(message) from None

    build.diffkd_hints = True
    return build


def _explain(err, cfg, registry, default_args, type_key,
             default_type) -> Optional[str]:
    if isinstance(cfg, (list, tuple)):
        # A list builds item by item (an nn.Sequential of models): the
        # first item that cannot be built is the one that failed.
        for item in cfg:
            message = _explain(err, item, registry, default_args, type_key,
                               default_type)
            if message is not None:
                return message
        return None
    if not isinstance(registry, Registry) or not hasattr(cfg, 'get'):
        return None
    defaults = default_args or {}
    obj_type = cfg.get(type_key, defaults.get(type_key, default_type))
    scope = cfg.get('_scope_', defaults.get('_scope_'))
    with registry.switch_scope_and_registry(scope) as reg:
        obj_cls = reg.get(obj_type) if isinstance(obj_type, str) \
            else obj_type
        if isinstance(err, KeyError):
            if isinstance(obj_type, str) and obj_cls is None:
                return unknown_type_message(obj_type, reg)
            return None
    if obj_cls is None or type_key != 'type' or \
            'unexpected keyword argument' not in str(err):
        return None
    merged = dict(cfg)
    for k, v in defaults.items():
        merged.setdefault(k, v)
    merged.pop('type', None)
    merged.pop('_scope_', None)
    return _config_key_message(obj_cls, merged, err)


def _ema_hook_renamed(cfg) -> str:
    decay = cfg.get('decay')
    momentum = f'{1 - decay:g}' if isinstance(decay, (int, float)) \
        else '...'
    return ("'EMAHook' is mmengine's, which averages a copy of the whole "
            'model (teacher, VAE and text encoders too) and checkpoints none '
            "of a diffkd model's averages; diffkd's EMA hook is "
            f"dict(type='TrainableEMAHook', momentum={momentum}) "
            '(momentum = 1 - decay)')


def _transform_renamed(old: str, new: str, library: str) -> Callable:

    def message(cfg) -> Optional[str]:
        if 'size' not in cfg:
            return None  # written for mmcv's class
        return (f"diffkd's {old!r} transform is now {new!r} (same "
                f"arguments); {old!r} is {library}")

    return message


def _normalize_renamed(cfg) -> Optional[str]:
    if 'to_rgb' in cfg:
        return None  # written for mmcv's class
    return ("diffkd's 'Normalize' transform is now 'NormalizeRGB' (same "
            "arguments); 'Normalize' is mmcv's, which needs mean and std "
            'and by default (to_rgb=True) swaps the channels of what it '
            "takes for BGR images, while diffkd's images are RGB: write "
            "dict(type='NormalizeRGB'), or give mmcv's to_rgb explicitly")


# Names that diffkd's own classes had until they were renamed so as not to
# shadow mmengine's and mmcv's classes: in diffkd's scope the name now
# builds the library's class, which would read a config written for
# diffkd's class otherwise (or fail deep inside). (registry, name) -> the
# error for such a config, or None when the config is the library's.
_RENAMED = {
    ('hook', 'EMAHook'): _ema_hook_renamed,
    ('transform', 'Resize'): _transform_renamed(
        'Resize', 'ResizeShortEdge',
        "mmcv's, which takes scale=(w, h) and keeps the aspect ratio only "
        'with keep_ratio=True'),
    ('transform', 'CenterCrop'): _transform_renamed(
        'CenterCrop', 'CenterCropWithCoords',
        "mmcv's, which takes crop_size=(w, h) and records no crop_top_left "
        "for SDXL's crop conditioning"),
    ('transform', 'RandomCrop'): _transform_renamed(
        'RandomCrop', 'RandomCropWithCoords', 'not an mmcv transform'),
    ('transform', 'Normalize'): _normalize_renamed,
}


def check_renamed(cfg, registry) -> None:
    """Raise :class:`RenamedTypeError` for a config written for a diffkd
    class under the name it had before it was renamed (``_RENAMED``)."""
    if not isinstance(registry, Registry) or not hasattr(cfg, 'get'):
        return
    obj_type = cfg.get('type')
    rule = _RENAMED.get((registry.name, obj_type)) \
        if isinstance(obj_type, str) else None
    if rule is None:
        return
    with registry.switch_scope_and_registry(cfg.get('_scope_')) as reg:
        if reg.scope != 'diffkd':
            return
    message = rule(cfg)
    if message:
        raise RenamedTypeError(message)


def _check_optimizer_type(cfg) -> None:
    """mmengine's DefaultOptimWrapperConstructor looks the optimizer class
    up itself and fails on a typo with "None is not a callable object":
    resolve it when the constructor is built."""
    wrapper_cfg = cfg.get('optim_wrapper_cfg') if hasattr(cfg, 'get') \
        else None
    optimizer = wrapper_cfg.get('optimizer') if hasattr(
        wrapper_cfg, 'get') else None
    obj_type = optimizer.get('type') if hasattr(optimizer, 'get') else None
    if isinstance(obj_type, str):
        with MMENGINE_OPTIMIZERS.switch_scope_and_registry(
                optimizer.get('_scope_')) as reg:
            if reg.get(obj_type) is None:
                raise UnknownTypeError(unknown_type_message(obj_type, reg))


def _child(name: str, root: Registry, locations: List[str],
           **hints) -> Registry:
    """diffkd's child of ``root``: mmengine's build function for that kind
    (models, schedulers, runners differ), with the hints above; ``root``
    itself is not changed."""
    return Registry(name, parent=root, locations=locations,
                    build_func=_with_hints(root.build_func, **hints))


# Diffusion wrappers, distillers and losses (losses are modules too, as in
# the OpenMMLab codebases).
MODELS = _child('model', MMENGINE_MODELS, ['diffkd.models'])
# Block-removal recipes: teacher UNet config -> student config + module map.
COMPRESSIONS = Registry('compression', build_func=_with_hints(build_from_cfg),
                        locations=['diffkd.models.compression'])
DATASETS = _child('dataset', MMENGINE_DATASETS, ['diffkd.datasets'])
TRANSFORMS = _child('transform', MMENGINE_TRANSFORMS,
                    ['diffkd.datasets.transforms'])
DATA_SAMPLERS = _child('data sampler', MMENGINE_DATA_SAMPLERS,
                       ['diffkd.datasets'])
# Collate functions; FSDP wrap policies.
FUNCTIONS = _child('function', MMENGINE_FUNCTIONS,
                   ['diffkd.datasets', 'diffkd.engine'])
HOOKS = _child('hook', MMENGINE_HOOKS, ['diffkd.engine'])
OPTIMIZERS = _child('optimizer', MMENGINE_OPTIMIZERS, ['diffkd.engine'])
OPTIM_WRAPPERS = _child('optim_wrapper', MMENGINE_OPTIM_WRAPPERS,
                        ['diffkd.engine'])
PARAM_SCHEDULERS = _child('parameter scheduler', MMENGINE_PARAM_SCHEDULERS,
                          ['diffkd.engine'])
METRICS = _child('metric', MMENGINE_METRICS, ['diffkd.evaluation'])
EVALUATOR = _child('evaluator', MMENGINE_EVALUATOR, ['diffkd.evaluation'])
VISUALIZERS = _child('visualizer', MMENGINE_VISUALIZERS, ['diffkd.engine'])
VISBACKENDS = _child('vis_backend', MMENGINE_VISBACKENDS, ['diffkd.engine'])
# Engine plumbing: children so ``default_scope='diffkd'`` finds mmengine's
# loops, runners and wrappers without a fallback warning.
# A runner's type is ``runner_type`` and its config is the whole file.
RUNNERS = _child('runner', MMENGINE_RUNNERS, ['diffkd.engine'],
                 type_key='runner_type', default_type='Runner')
LOOPS = _child('loop', MMENGINE_LOOPS, ['diffkd.engine'])
# mmengine's Runner and FlexibleRunner look model wrappers and strategies
# up in their root registries before the default scope applies: configs
# name diffkd's as 'diffkd.DiffusionDDP', 'diffkd.DiffusionFSDPStrategy'.
MODEL_WRAPPERS = _child('model_wrapper', MMENGINE_MODEL_WRAPPERS,
                        ['diffkd.engine'])
STRATEGIES = _child('strategy', MMENGINE_STRATEGIES, ['diffkd.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = _child(
    'optimizer wrapper constructor', MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    ['diffkd.engine'], precheck=_check_optimizer_type)
LOG_PROCESSORS = _child('log_processor', MMENGINE_LOG_PROCESSORS,
                        ['diffkd.engine'])
