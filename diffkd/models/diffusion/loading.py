"""Loading pretrained components by hub id or local folder, with errors that
name the folder and subfolder that could not be read."""
import os.path as osp
from typing import Any, Optional

from diffkd.utils.hub import resolve_model_path


def load_component(cls: Any,
                   name_or_path: str,
                   subfolder: Optional[str] = None,
                   **kwargs) -> Any:
    """``cls.from_pretrained(name_or_path, subfolder=...)`` with clear errors.

    Never passes ``trust_remote_code``: remote code runs only when a user's
    config asks for it through ``kwargs``.
    """
    path = resolve_model_path(name_or_path)
    where = f'{name_or_path}' + (f' (subfolder {subfolder!r})'
                                 if subfolder else '')
    if osp.isdir(path):
        folder = osp.join(path, subfolder) if subfolder else path
        if not osp.isdir(folder):
            raise FileNotFoundError(
                f'cannot load {cls.__name__} from {where}: folder {folder} '
                'does not exist')
        if not any(
                osp.exists(osp.join(folder, f))
                for f in ('config.json', 'scheduler_config.json',
                          'tokenizer_config.json', 'tokenizer.json',
                          'vocab.json')):
            raise FileNotFoundError(
                f'cannot load {cls.__name__} from {where}: {folder} has no '
                'config.json (is it a diffusers/transformers save folder?)')
    try:
        if subfolder:
            return cls.from_pretrained(path, subfolder=subfolder, **kwargs)
        return cls.from_pretrained(path, **kwargs)
    except (OSError, ValueError, EnvironmentError) as err:
        raise type(err)(f'cannot load {cls.__name__} from {where}: {err}') \
            from err
