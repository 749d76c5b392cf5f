"""Prompt sets for evaluation: each item is one prompt with its own seed,
so every model evaluated on the set draws from the same noise."""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Union

from torch.utils.data import Dataset

from diffkd.registry import DATASETS
from .hf_dataset import DataError, load_hf_dataset

TOY_PROMPTS = 'diffkd-toy'


def read_prompt_file(path: str) -> List[str]:
    """One prompt per line; blank lines and ``#`` comments are skipped."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'prompt file {path} does not exist')
    prompts = []
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('#'):
                prompts.append(line)
    if not prompts:
        raise DataError(f'prompt file {path} holds no prompts')
    return prompts


@DATASETS.register_module()
class PromptDataset(Dataset):
    """Prompts from a list, a text file, a dataset's caption column or the
    toy world (``'diffkd-toy'``: its 90 captions).

    Args:
        prompts: a list of strings, a ``.txt`` path, a dataset (hub id or
            local folder, read like HFImageTextDataset) or ``'diffkd-toy'``.
        caption_column / split: where the prompts are in a dataset.
        num_prompts: keep this many (evenly spread over the set for the toy
            prompts, the first ones otherwise).
        seed: prompt ``i`` samples with seed ``seed + i``.
    """

    def __init__(self,
                 prompts: Union[str, Sequence[str]] = TOY_PROMPTS,
                 caption_column: str = 'text',
                 split: str = 'validation',
                 num_prompts: Optional[int] = None,
                 seed: int = 0):
        if not isinstance(prompts, str):
            items = [str(p) for p in prompts]
        elif prompts == TOY_PROMPTS:
            from diffkd.evaluation.toy import toy_prompts
            items = toy_prompts(num_prompts)
        elif prompts.endswith('.txt'):
            items = read_prompt_file(prompts)
        else:
            ds = load_hf_dataset(prompts, split)
            if caption_column not in ds.column_names:
                raise DataError(
                    f'dataset {prompts!r}: caption column {caption_column!r} '
                    f'not found; available columns: {ds.column_names}')
            items = [str(c) for c in ds[caption_column]]
        self.prompts = items[:num_prompts]
        if not self.prompts:
            raise DataError(f'prompt set {prompts!r} is empty')
        self.seed = seed

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, idx: int) -> Dict:
        return dict(inputs=dict(
            text=self.prompts[idx], seed=self.seed + idx, index=idx))
