"""Sentence BLEU-4 exactly as Hugging Face `evaluate`'s "bleu" metric computes it for one
prediction and one reference with `smooth=True` (the paper's BLEU), without `evaluate`, whose
metric scripts live on the hub.

`evaluate` tokenizes with its copy of sacrebleu's mteval-13a tokenizer (returning the split
tokens) and scores with tensorflow/nmt's `compute_bleu`: clipped n-gram matches per order,
Lin & Och (2004) add-one smoothing on EVERY order, geometric mean, brevity penalty. See
docs/metrics.md for why add-one on all orders flatters short replies.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache

MAX_ORDER = 4


@lru_cache(maxsize=1)
def _tokenizer_13a():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


@lru_cache(maxsize=2**17)
def tokenize_13a(text: str) -> tuple[str, ...]:
    """mteval-13a tokens (sacrebleu's tokenizer, split on whitespace), case kept. Cached:
    the same reference is scored against every responder."""
    return tuple(_tokenizer_13a()(text).split())


def ngram_counts(tokens: Sequence[str], max_order: int = MAX_ORDER) -> Counter:
    """All n-grams of orders 1..max_order with their counts (n-grams are tuples)."""
    counts: Counter = Counter()
    for order in range(1, max_order + 1):
        for i in range(len(tokens) - order + 1):
            counts[tuple(tokens[i:i + order])] += 1
    return counts


def smoothed_bleu(reference: Sequence[str], prediction: Sequence[str],
                  max_order: int = MAX_ORDER) -> float:
    """BLEU in [0, 1] of one tokenized prediction against one tokenized reference, add-one
    smoothed on every order. An empty prediction or reference scores 0.0 (older `evaluate`
    versions divide by zero there; newer ones set the brevity penalty to 0)."""
    if not reference or not prediction:
        return 0.0
    overlap = ngram_counts(prediction, max_order) & ngram_counts(reference, max_order)
    matches = [0] * max_order
    for ngram, count in overlap.items():
        matches[len(ngram) - 1] += count
    log_sum = 0.0
    for order in range(1, max_order + 1):
        possible = max(0, len(prediction) - order + 1)
        log_sum += (1.0 / max_order) * math.log((matches[order - 1] + 1.0) / (possible + 1.0))
    ratio = len(prediction) / len(reference)
    bp = 1.0 if ratio > 1.0 else math.exp(1.0 - 1.0 / ratio)
    return math.exp(log_sum) * bp


def bleu4(reference: str, prediction: str) -> float:
    """The paper's BLEU-4 (x100) of one prediction against one reference."""
    return 100.0 * smoothed_bleu(tokenize_13a(reference), tokenize_13a(prediction))
