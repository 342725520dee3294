"""Sentence-level BLEU of one tokenised hypothesis against one reference, unsmoothed.

This is the BLEU that papers computing ``nltk``'s ``sentence_bleu`` with its default (no)
smoothing report, written out so that the number does not depend on nltk being installed.
Its zero-count rules are kept because they decide the score of short answers:

- modified precision p_n = clipped n-gram matches / max(1, hypothesis n-grams);
- no unigram match at all: the score is 0;
- otherwise an order with no match contributes the smallest positive float instead of 0, so
  the geometric mean is a tiny positive number (about 1e-77 with one such order of four), not 0;
- brevity penalty exp(1 - r/c) when the hypothesis (c tokens) is not longer than the
  reference (r tokens); 1 when it is longer.
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Sequence


def _ngram_counts(tokens: Sequence[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def clipped_precision(hypothesis: Sequence[str], reference: Sequence[str], n: int) -> tuple[int, int]:
    """(matches clipped by the reference's counts, max(1, number of hypothesis n-grams))."""
    hypothesis_counts = _ngram_counts(hypothesis, n)
    reference_counts = _ngram_counts(reference, n)
    matches = sum(min(count, reference_counts[gram]) for gram, count in hypothesis_counts.items())
    return matches, max(1, sum(hypothesis_counts.values()))


def brevity_penalty(hypothesis_length: int, reference_length: int) -> float:
    if hypothesis_length > reference_length:
        return 1.0
    if hypothesis_length == 0:
        return 0.0
    return math.exp(1 - reference_length / hypothesis_length)


def sentence_bleu(hypothesis: Sequence[str], reference: Sequence[str], max_order: int = 4) -> float:
    """BLEU-``max_order`` in [0, 1] with uniform weights (see the module docstring)."""
    precisions = [clipped_precision(hypothesis, reference, n) for n in range(1, max_order + 1)]
    if precisions[0][0] == 0:
        return 0.0
    weight = 1.0 / max_order
    log_terms = [
        weight * math.log(matches / total if matches else sys.float_info.min) for matches, total in precisions
    ]
    return brevity_penalty(len(hypothesis), len(reference)) * math.exp(math.fsum(log_terms))


__all__ = ["brevity_penalty", "clipped_precision", "sentence_bleu"]
