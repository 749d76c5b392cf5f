"""Registries of diffkd, children of mmengine's root registries.

Every registry names the package that holds its modules in ``locations`` so
that a config with ``default_scope='diffkd'`` resolves each ``type=`` without
importing anything by hand.
"""
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
from mmengine.registry import Registry

# Diffusion wrappers, distillers and losses (losses are modules too, as in
# the OpenMMLab codebases).
MODELS = Registry('model', parent=MMENGINE_MODELS, locations=['diffkd.models'])
# Block-removal recipes: teacher UNet config -> student config + module map.
COMPRESSIONS = Registry('compression', locations=['diffkd.models.compression'])
DATASETS = Registry(
    'dataset', parent=MMENGINE_DATASETS, locations=['diffkd.datasets'])
TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS,
    locations=['diffkd.datasets.transforms'])
DATA_SAMPLERS = Registry(
    'data sampler', parent=MMENGINE_DATA_SAMPLERS,
    locations=['diffkd.datasets'])
FUNCTIONS = Registry(
    'function', parent=MMENGINE_FUNCTIONS, locations=['diffkd.datasets'])
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, locations=['diffkd.engine'])
OPTIMIZERS = Registry(
    'optimizer', parent=MMENGINE_OPTIMIZERS, locations=['diffkd.engine'])
OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS,
    locations=['diffkd.engine'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler', parent=MMENGINE_PARAM_SCHEDULERS,
    locations=['diffkd.engine'])
METRICS = Registry(
    'metric', parent=MMENGINE_METRICS, locations=['diffkd.evaluation'])
EVALUATOR = Registry(
    'evaluator', parent=MMENGINE_EVALUATOR, locations=['diffkd.evaluation'])
VISUALIZERS = Registry(
    'visualizer', parent=MMENGINE_VISUALIZERS, locations=['diffkd.engine'])
VISBACKENDS = Registry(
    'vis_backend', parent=MMENGINE_VISBACKENDS, locations=['diffkd.engine'])
# Engine plumbing: children so ``default_scope='diffkd'`` finds mmengine's
# loops, runners and wrappers without a fallback warning.
RUNNERS = Registry('runner', parent=MMENGINE_RUNNERS,
                   locations=['diffkd.engine'])
LOOPS = Registry('loop', parent=MMENGINE_LOOPS, locations=['diffkd.engine'])
MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS,
    locations=['diffkd.engine'])
OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    locations=['diffkd.engine'])
LOG_PROCESSORS = Registry(
    'log_processor', parent=MMENGINE_LOG_PROCESSORS,
    locations=['diffkd.engine'])
