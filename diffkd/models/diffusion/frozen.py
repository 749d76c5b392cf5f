"""Frozen parts of a model (VAE, text encoders, a teacher): found in one
place, kept in inference mode and out of checkpoints."""
from typing import List, Optional, Tuple

import torch.nn as nn


def is_frozen(module: nn.Module) -> bool:
    """Holds parameters, none of which trains."""
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def frozen_children(module: nn.Module) -> List[str]:
    """Names of the children that are frozen as a whole."""
    return [name for name, child in module.named_children()
            if is_frozen(child)]


def frozen_modules(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The largest frozen submodules, at any depth (a teacher, a VAE, frozen
    text encoders, the frozen base layers of a LoRA-trained UNet)."""
    found = []

    def visit(prefix, module):
        for name, child in module.named_children():
            full = f'{prefix}{name}'
            if is_frozen(child):
                found.append((full, child))
            elif any(p.requires_grad for p in child.parameters()):
                visit(full + '.', child)

    visit('', model)
    return found


class FrozenChildrenStayInEval:
    """Mixin: ``train()`` switches only the children that train.

    Frozen components (VAE, text encoders, a teacher) stay in inference
    mode and are not walked again: mmengine's train loop calls
    ``model.train()`` every iteration, and walking the thousands of modules
    of a teacher and its encoders each time cost about 30 ms a step on the
    toy SDXL distiller (``benchmark_train.py``), more than the optimizer.
    Which children are frozen is decided at the first call, after the model
    is built (``requires_grad`` is set in the constructors). A child already
    in the requested mode is not walked either: mode changes go through the
    model (``model.train()`` / ``model.eval()``), which keeps every
    submodule's flag equal to its child's.
    """
    _frozen_for_train: Optional[frozenset] = None

    def train(self, mode: bool = True):
        if self._frozen_for_train is None:
            self._frozen_for_train = frozenset(frozen_children(self))
            first = True
        else:
            first = False
        self.training = mode
        for name, child in self.named_children():
            want = mode and name not in self._frozen_for_train
            if first or child.training != want:
                child.train(want)
        return self


class FrozenWeightsOutOfCheckpoints:
    """Mixin: checkpoints hold only the children that train.

    Frozen components (VAE, text encoders, a teacher) are reloaded from their
    pretrained source when the config is built again, so storing them in
    every checkpoint would only cost disk and time.
    """

    def _init_checkpoint_filter(self):
        self._register_state_dict_hook(self._drop_frozen)
        self.register_load_state_dict_post_hook(self._ignore_frozen_missing)

    @staticmethod
    def _drop_frozen(module, state_dict, prefix, local_metadata):
        for name in frozen_children(module):
            start = f'{prefix}{name}.'
            for key in [k for k in state_dict if k.startswith(start)]:
                del state_dict[key]
        return state_dict

    @staticmethod
    def _ignore_frozen_missing(module, incompatible_keys):
        frozen = tuple(f'{n}.' for n in frozen_children(module))
        missing = incompatible_keys.missing_keys
        missing[:] = [k for k in missing if not k.startswith(frozen)]
