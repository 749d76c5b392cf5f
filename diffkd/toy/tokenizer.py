"""A tiny CLIP BPE tokenizer for the toy world.

Characters are always in the vocabulary, so any lowercase prompt tokenizes
(unknown words fall back to letters); the toy world's words and the usual
DreamBooth words get a whole-word token each.
"""
import string
from typing import Dict, List, Tuple

from transformers import CLIPTokenizer

from .shapes import COLOURS, SHAPES

BOS, EOS = '<|startoftext|>', '<|endoftext|>'
EXTRA_WORDS = ('a', 'an', 'on', 'background', 'photo', 'of', 'the', 'in',
               'sks', 'dog', 'shape', 'pattern', 'striped', 'picture',
               'image', 'with', 'and')


def toy_words() -> List[str]:
    return list(dict.fromkeys(list(COLOURS) + list(SHAPES) +
                              list(EXTRA_WORDS)))


def _vocab_and_merges(words) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    chars = list(string.ascii_lowercase + string.digits + ".,!?'-:;()")
    tokens = [BOS, EOS] + chars + [c + '</w>' for c in chars]
    merges: List[Tuple[str, str]] = []
    for word in words:
        # Merge left to right: ('r','e') -> 're', ('re','d</w>') -> 'red</w>'.
        parts = list(word[:-1]) + [word[-1] + '</w>']
        while len(parts) > 1:
            pair = (parts[0], parts[1])
            if pair not in merges:
                merges.append(pair)
            parts = [parts[0] + parts[1]] + parts[2:]
            if parts[0] not in tokens:
                tokens.append(parts[0])
    return {t: i for i, t in enumerate(tokens)}, merges


def build_toy_tokenizer(model_max_length: int = 77) -> CLIPTokenizer:
    vocab, merges = _vocab_and_merges(toy_words())
    return CLIPTokenizer(
        vocab=vocab, merges=merges, model_max_length=model_max_length)
