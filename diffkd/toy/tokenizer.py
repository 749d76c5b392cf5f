"""The toy world's tokenizer: a tiny CLIP BPE tokenizer whose whole-word
tokens are the toy world's words and the usual DreamBooth words (others
fall back to letters)."""
from typing import List

from diffkd.utils.tokenizer import BOS, EOS, build_word_tokenizer
from .shapes import COLOURS, SHAPES

__all__ = ['BOS', 'EOS', 'EXTRA_WORDS', 'build_toy_tokenizer', 'toy_words']

EXTRA_WORDS = ('a', 'an', 'on', 'background', 'photo', 'of', 'the', 'in',
               'sks', 'dog', 'shape', 'pattern', 'striped', 'picture',
               'image', 'with', 'and')


def toy_words() -> List[str]:
    return list(dict.fromkeys(list(COLOURS) + list(SHAPES) +
                              list(EXTRA_WORDS)))


def build_toy_tokenizer(model_max_length: int = 77):
    return build_word_tokenizer(toy_words(), model_max_length)
