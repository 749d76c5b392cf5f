"""A tiny CLIP BPE tokenizer built from a word list (no vocabulary files).

Characters are always in the vocabulary, so any lowercase prompt tokenizes
(unknown words fall back to letters); each given word gets a whole-word
token.
"""
import string
from typing import Dict, List, Sequence, Tuple

BOS, EOS = '<|startoftext|>', '<|endoftext|>'


def _vocab_and_merges(
        words: Sequence[str]) -> Tuple[Dict[str, int], List[Tuple[str, str]]]:
    """Train BPE on the word list until every word is one token.

    Merges are learnt most-frequent-pair first, as BPE does, so applying
    them by rank reproduces whole words (hand-written left-to-right chains
    would be pre-empted by other words' merges).
    """
    chars = list(string.ascii_lowercase + string.digits + ".,!?'-:;()")
    tokens = [BOS, EOS] + chars + [c + '</w>' for c in chars]
    corpus = [list(w[:-1]) + [w[-1] + '</w>'] for w in words]
    merges: List[Tuple[str, str]] = []
    while any(len(w) > 1 for w in corpus):
        counts: Dict[Tuple[str, str], int] = {}
        for w in corpus:
            for pair in zip(w, w[1:]):
                counts[pair] = counts.get(pair, 0) + 1
        best = max(counts, key=lambda p: (counts[p], p))
        merges.append(best)
        merged = best[0] + best[1]
        if merged not in tokens:
            tokens.append(merged)
        for k, w in enumerate(corpus):
            out, i = [], 0
            while i < len(w):
                if i + 1 < len(w) and (w[i], w[i + 1]) == best:
                    out.append(merged)
                    i += 2
                else:
                    out.append(w[i])
                    i += 1
            corpus[k] = out
    return {t: i for i, t in enumerate(tokens)}, merges


def build_word_tokenizer(words: Sequence[str] = (),
                         model_max_length: int = 77):
    """A ``CLIPTokenizer`` with one token per word of ``words``."""
    from transformers import CLIPTokenizer
    vocab, merges = _vocab_and_merges(list(dict.fromkeys(words)))
    return CLIPTokenizer(
        vocab=vocab, merges=merges, model_max_length=model_max_length)
