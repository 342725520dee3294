"""Summary-level ROUGE-L on sentences split at full stops and words split at spaces.

This is the ROUGE-L of the ``rouge`` package (1.0.x, default settings) that TRACE's free-text
scores are computed with, written out because it is not rouge-score's ROUGE-L:

- a text is cut into sentences at every ``.``; empty pieces are dropped and runs of white space
  in the others collapse to one space; words are the sentences' space-separated pieces, kept as
  written (no lowercasing, punctuation other than ``.`` stays attached, so a Chinese sentence is
  one word);
- lengths are the numbers of *distinct* words; the overlap is the number of distinct words on
  the union of the longest common subsequences of every (reference sentence, hypothesis
  sentence) pair, each traced back from the end (match, else up when strictly longer, else left);
- recall = overlap / reference length, precision = overlap / hypothesis length,
  F = 2PR / (P + R + 1e-8).
"""

from __future__ import annotations

from collections.abc import Sequence

#: The package's guard against 0/0 in the F-measure; it also keeps an exact match just under 1.
F_EPSILON = 1e-8


def sentences(text: str) -> list[str]:
    """The text's sentences: pieces between full stops, white space collapsed, empty pieces gone."""
    return [" ".join(piece.split()) for piece in text.split(".") if piece]


def _words(text_sentences: Sequence[str]) -> list[str]:
    return [word for sentence in text_sentences for word in sentence.split(" ")]


def lcs_words(x: Sequence[str], y: Sequence[str]) -> set[str]:
    """The distinct words of one longest common subsequence of ``x`` and ``y``, the one traced
    back from the end preferring a match, then ``x``'s shorter prefix when strictly better."""
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(table[i - 1][j], table[i][j - 1])
    found: set[str] = set()
    i, j = len(x), len(y)
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            found.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return found


def summary_rouge_l(hypothesis: str, reference: str) -> float:
    """The F-measure in [0, 1); 0 where either text has no sentence (the package raises there)."""
    hypothesis_sentences, reference_sentences = sentences(hypothesis), sentences(reference)
    if not hypothesis_sentences or not reference_sentences:
        return 0.0
    union: set[str] = set()
    for reference_sentence in reference_sentences:
        for hypothesis_sentence in hypothesis_sentences:
            union |= lcs_words(reference_sentence.split(" "), hypothesis_sentence.split(" "))
    recall = len(union) / len(set(_words(reference_sentences)))
    precision = len(union) / len(set(_words(hypothesis_sentences)))
    return 2.0 * ((precision * recall) / (precision + recall + F_EPSILON))


__all__ = ["F_EPSILON", "lcs_words", "sentences", "summary_rouge_l"]
