"""The free-text metrics as TRACE's evaluation computes them, for numbers comparable with its
tables.

retain's own ``bleu``, ``rouge_l``, ``sari`` and ``edit_sim`` are the maintained packages'
definitions; TRACE's differ on the same answers (corpus against sentence BLEU, another ROUGE-L,
SARI with repeated n-grams, per-example rounding), by up to a few points on one task. These
variants reproduce TRACE's number for a task, under the same conventions:

- an example whose answer or target is the empty string scores 0 and still counts in the mean
  (TRACE skips it in the sum and divides by all examples); SARI has no such rule;
- every score is 100 x the mean over examples (TRACE gives BLEU and ROUGE-L as fractions).
"""

from __future__ import annotations

import re

from retain.evaluation.metrics.base import Metric
from retain.evaluation.metrics.rouge_l_summary import summary_rouge_l
from retain.evaluation.metrics.sari import sari_counted
from retain.evaluation.metrics.sentence_bleu import sentence_bleu

_BLEU_SEPARATORS = re.compile(r"[\s.]+")
_TYPED_LITERAL = re.compile(r"<(?:STR|NUM|CHAR)_LIT:(.*?)>", re.S)


def bleu_tokens(text: str) -> list[str]:
    """TRACE's BLEU tokens: pieces between white space and full stops, empty pieces dropped."""
    return [token for token in _BLEU_SEPARATORS.split(text) if token]


def restore_code_literals(code: str) -> str:
    """Code-completion data (Py150) with its literal placeholders filled in, as TRACE compares it:
    ``<NUM_LIT>`` becomes 0, ``<STR_LIT>`` and ``<CHAR_LIT>`` vanish, ``<STR_LIT:abc>`` becomes abc."""
    code = code.replace("<NUM_LIT>", "0").replace("<STR_LIT>", "").replace("<CHAR_LIT>", "")
    return _TYPED_LITERAL.sub(lambda match: match.group(1), code)


class BleuTrace(Metric):
    """Mean sentence BLEU-4 (unsmoothed, uniform weights) on TRACE's tokens; see
    :mod:`retain.evaluation.metrics.sentence_bleu` for its handling of orders with no match."""

    name = "bleu_trace"
    display_name = "BLEU-4 (TRACE)"
    definition = ("sentence BLEU-4 (uniform weights, no smoothing, tokens split at white space and '.') of "
                  "answer against target x 100, mean over examples, as TRACE computes it")

    def score(self, prediction: str, target: str, source: str = "") -> float:
        if not prediction or not target:
            return 0.0
        return sentence_bleu(bleu_tokens(prediction), bleu_tokens(target))


class RougeLTrace(Metric):
    """Summary-level ROUGE-L of the ``rouge`` package, which TRACE calls with the target as the
    hypothesis and the answer as the reference (the order decides which LCS is traced)."""

    name = "rouge_l_trace"
    display_name = "ROUGE-L (TRACE)"
    definition = ("ROUGE-L F of the 'rouge' package (sentences split at '.', words at spaces, distinct-word "
                  "union LCS) x 100, mean over examples, as TRACE computes it")

    def score(self, prediction: str, target: str, source: str = "") -> float:
        if not prediction or not target:
            return 0.0
        return summary_rouge_l(target, prediction)


class SariTrace(Metric):
    """SARI of the reference script TRACE loads: repeated n-grams counted in keep and delete."""

    name = "sari_trace"
    display_name = "SARI (TRACE)"
    definition = ("SARI with repeated n-grams counted (keep F1, delete precision, add F1 over 1-4-grams "
                  "against the prompt as source; 13a tokens, lowercased) x 100, mean over examples, as TRACE "
                  "computes it")

    def score(self, prediction: str, target: str, source: str = "") -> float:
        return sari_counted(prediction, target, source)


class EditSimTrace(Metric):
    """Indel similarity rounded to a whole percent per example (as fuzzywuzzy's ``fuzz.ratio``
    returns it with python-Levenshtein installed; without it fuzzywuzzy falls back to difflib's
    matching, another number), after filling in the code literals; the mean of the rounded scores."""

    name = "edit_sim_trace"
    display_name = "Edit similarity (TRACE)"
    definition = ("Indel similarity of answer and target rounded to a whole percent per example, literal "
                  "placeholders (<NUM_LIT>, <STR_LIT:...>) filled in first, mean over examples, as TRACE "
                  "computes it")

    def score(self, prediction: str, target: str, source: str = "") -> float:
        from rapidfuzz.distance import Indel

        prediction, target = restore_code_literals(prediction), restore_code_literals(target)
        if not prediction or not target:
            return 0.0
        length = len(prediction) + len(target)
        # Python's round (half to even), as fuzzywuzzy's int(round(x)); the division as Levenshtein.ratio
        return round(100 * ((length - Indel.distance(prediction, target)) / length)) / 100.0


class AccuracyTrace(Metric):
    """The answer equals the target exactly, as TRACE's accuracy compares them (after the task's
    answer post-processing). retain's ``accuracy`` normalises first, which drops the article "a":
    an option letter ``A`` becomes the empty string and an empty or punctuation-only answer would
    then count as right."""

    name = "accuracy_trace"
    display_name = "Accuracy (TRACE)"
    definition = "the answer equals the target exactly (no normalisation), % of examples, as TRACE computes it"

    def score(self, prediction: str, target: str, source: str = "") -> float:
        return float(prediction == target)


TRACE_METRICS: tuple[type[Metric], ...] = (AccuracyTrace, BleuTrace, RougeLTrace, SariTrace, EditSimTrace)

__all__ = ["TRACE_METRICS", "AccuracyTrace", "BleuTrace", "EditSimTrace", "RougeLTrace", "SariTrace", "bleu_tokens", "restore_code_literals"]
