"""SARI (Xu et al., 2016, "Optimizing Statistical Machine Translation for Text Simplification").

Defined here because no maintained package computes it offline: ``evaluate`` fetches its SARI
script from the Hub at run time, and neither ``sacrebleu`` nor ``torchmetrics`` ships one. The
tokenisation is sacrebleu's (13a, lowercased), the convention of simplification benchmarks.

For n = 1..4, over the n-gram *sets* of source S, prediction P and reference R:

- keep:   F1 of P∩S against R∩S (n-grams rightly kept)
- delete: precision of S−P against S−R (n-grams rightly deleted)
- add:    F1 of P−S against R−S (n-grams rightly added)

SARI = mean over n of (F_keep + P_delete + F_add) / 3. An empty operation scores 1 (0/0 = 1:
nothing to do and nothing done is right), so a prediction equal to its reference scores 1.

:func:`sari_counted` is the variant of the reference script that simplification papers (and
TRACE) load: keep and delete count repeated n-grams (an n-gram twice in the source and once in
the prediction is kept once and deleted once), and the text is split at single spaces after
the same 13a tokenisation (an empty text is one empty token). With C(x) the n-gram counts,
& the minimum and - the positive difference of counts:

- keep:   K = C(S) & C(P); precision = mean over K's n-grams g of (K & C(R))[g] / K[g];
          recall = |K & C(R)| / |C(S) & C(R)| (sizes: summed counts); F1 of the two
- delete: D = C(S) - C(P); precision = mean over D's n-grams g of (D - C(R))[g] / D[g]
- add:    as above, over sets

Repeats change the score of an example by up to a few points against :func:`sari`.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Any

from retain.evaluation.metrics.base import Metric

MAX_ORDER = 4


@lru_cache(maxsize=1)
def _tokenizer() -> Any:
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    return Tokenizer13a()


def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    tokens = _tokenizer()(text.lower()).split()
    return {tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def _ratio(hits: int, total: int) -> float:
    return 1.0 if total == 0 else hits / total


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def sari(prediction: str, reference: str, source: str) -> float:
    """SARI of one prediction in [0, 1] (see the module docstring for the definition)."""
    total = 0.0
    for n in range(1, MAX_ORDER + 1):
        s, p, r = _ngrams(source, n), _ngrams(prediction, n), _ngrams(reference, n)
        kept, kept_ref = p & s, r & s
        keep = _f1(_ratio(len(kept & kept_ref), len(kept)), _ratio(len(kept & kept_ref), len(kept_ref)))
        deleted, deleted_ref = s - p, s - r
        delete = _ratio(len(deleted & deleted_ref), len(deleted))
        added, added_ref = p - s, r - s
        add = _f1(_ratio(len(added & added_ref), len(added)), _ratio(len(added & added_ref), len(added_ref)))
        total += (keep + delete + add) / 3
    return total / MAX_ORDER


def _ngram_counts(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _space_tokens(text: str) -> list[str]:
    return _tokenizer()(text.lower()).split(" ")


def _counted_ngram_scores(
    s: Counter[tuple[str, ...]], p: Counter[tuple[str, ...]], r: Counter[tuple[str, ...]]
) -> tuple[float, float, float]:
    """(keep F1, delete precision, add F1) of one n-gram order, with repeats counted."""
    kept = s & p
    kept_right = kept & r
    keep_precision = 1.0 if not kept else sum(kept_right[g] / kept[g] for g in kept) / len(kept)
    keepable = s & r
    keep_recall = 1.0 if not keepable else sum(kept_right.values()) / sum(keepable.values())
    deleted = s - p
    deleted_right = deleted - r
    delete = 1.0 if not deleted else sum(deleted_right[g] / deleted[g] for g in deleted) / len(deleted)
    added, added_ref = set(p) - set(s), set(r) - set(s)
    hits = len(added & added_ref)
    add = _f1(_ratio(hits, len(added)), _ratio(hits, len(added_ref)))
    return _f1(keep_precision, keep_recall), delete, add


def sari_counted(prediction: str, reference: str, source: str) -> float:
    """SARI of one prediction in [0, 1], repeats counted (see the module docstring)."""
    tokens = [_space_tokens(text) for text in (source, prediction, reference)]
    total = 0.0
    for n in range(1, MAX_ORDER + 1):
        s, p, r = (_ngram_counts(t, n) for t in tokens)
        total += sum(_counted_ngram_scores(s, p, r)) / 3
    return total / MAX_ORDER


class Sari(Metric):
    name = "sari"
    display_name = "SARI"
    definition = ("SARI (keep F1, delete precision, add F1 over 1-4-grams against the prompt as source; "
                  "sacrebleu 13a tokens, lowercased) x 100, mean over examples")

    def score(self, prediction: str, target: str, source: str = "") -> float:
        return sari(prediction, target, source)


__all__ = ["MAX_ORDER", "Sari", "sari", "sari_counted"]
