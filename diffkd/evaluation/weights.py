"""Where evaluation metrics find their network weights offline.

A metric that needs weights (CLIP, Inception for FID, AlexNet+linear
heads for LPIPS) resolves them when it is built, before any image is
generated, so a missing file costs nothing. The message names the file,
the folder it is looked for in and the config key that points elsewhere.
"""
import os
import os.path as osp
from typing import Optional

from diffkd.utils.hub import diffkd_home


class MissingWeightsError(FileNotFoundError):
    """A metric's weights are not on this machine."""


def metrics_dir() -> str:
    """``$DIFFKD_HOME/metrics``: the default place for metric weights."""
    return osp.join(diffkd_home(), 'metrics')


def find_weights_file(metric: str, key: str, configured: Optional[str],
                      filename: str, url: str) -> str:
    """The path of a metric's weights file, or a MissingWeightsError.

    ``configured`` is what the config gave for ``key`` (None: the default
    ``$DIFFKD_HOME/metrics/<filename>``).
    """
    path = osp.expanduser(configured) if configured else osp.join(
        metrics_dir(), filename)
    if osp.isfile(path) and os.path.getsize(path) > 0:
        return path
    raise MissingWeightsError(
        f'{metric} needs the weights file {filename!r}, not found at '
        f'{path}. Download it on a machine with internet from {url} and put '
        f'it at {path}, or set {metric}.{key} in the config to where it is.')


def find_hf_model(metric: str, key: str, name_or_path: str,
                  needs: str) -> str:
    """A local folder for a hub model: the path itself, or the hub cache's
    snapshot when the model was downloaded before (never a download)."""
    if osp.isdir(osp.expanduser(name_or_path)):
        return osp.expanduser(name_or_path)
    try:
        from huggingface_hub import snapshot_download
        return snapshot_download(name_or_path, local_files_only=True)
    except Exception:  # not cached, or not a valid repo id
        raise MissingWeightsError(
            f'{metric} needs {needs} {name_or_path!r}: it is neither a local '
            f'folder nor in the Hugging Face cache. On a machine with '
            f'internet run `huggingface-cli download {name_or_path} '
            f'--local-dir <folder>`, copy the folder here and set '
            f'{metric}.{key}=<folder> in the config.') from None
