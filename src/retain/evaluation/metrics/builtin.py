"""The built-in metrics. Each computes with a maintained package where one exists: ROUGE-L with
``rouge-score``, BLEU with ``sacrebleu``, edit similarity with ``rapidfuzz``; SARI is defined in
:mod:`retain.evaluation.metrics.sari` (no maintained package computes it offline)."""

from __future__ import annotations

import re
import string
from typing import Any, Sequence

from retain.evaluation.metrics.base import Metric
from retain.evaluation.metrics.tokens import MultilingualTokenizer

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """Lowercase, drop punctuation and articles, collapse white space."""
    text = text.lower().translate(_PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, target: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(target)


class Accuracy(Metric):
    name = "accuracy"
    display_name = "Accuracy"
    definition = ("exact match after normalisation (lowercase; punctuation, articles and extra white space "
                  "removed), or the classifier's argmax; % of examples")

    def score(self, prediction: str, target: str, source: str = "") -> float:
        return float(exact_match(prediction, target))


class RougeL(Metric):
    """rouge-score's LCS F1 on tokens that keep every script (see
    :mod:`retain.evaluation.metrics.tokens`): identical to rouge-score on ASCII text, and a
    Chinese or German answer is scored on its words instead of on nothing."""

    name = "rouge_l"
    display_name = "ROUGE-L"
    definition = ("ROUGE-L F1 of answer and target (rouge-score, no stemming; tokens keep non-ASCII letters, "
                  "one per CJK character) x 100, mean over examples")
    _scorer: Any = None

    def score(self, prediction: str, target: str, source: str = "") -> float:
        if RougeL._scorer is None:
            from rouge_score import rouge_scorer

            RougeL._scorer = rouge_scorer.RougeScorer(
                ["rougeL"], use_stemmer=False, tokenizer=MultilingualTokenizer()
            )
        return RougeL._scorer.score(target, prediction)["rougeL"].fmeasure


class Perplexity(Metric):
    """Computed by the engine from token log-likelihoods (pooled over the set), not per example."""

    name = "perplexity"
    display_name = "Perplexity"
    higher_is_better = False
    range = None
    inputs = "likelihood"
    definition = "exp of the mean token negative log-likelihood over all target tokens of the set"


class Bleu(Metric):
    """Corpus BLEU of sacrebleu (its default 13a tokenisation); per example: sentence BLEU / 100."""

    name = "bleu"
    display_name = "BLEU"
    definition = "corpus BLEU (sacrebleu, 13a tokenisation, one reference per example)"

    def score(self, prediction: str, target: str, source: str = "") -> float:
        import sacrebleu

        return sacrebleu.sentence_bleu(prediction, [target]).score / 100.0

    def aggregate(
        self,
        scores: Sequence[float],
        predictions: Sequence[str] = (),
        targets: Sequence[str] = (),
        sources: Sequence[str] = (),
    ) -> float:
        import sacrebleu

        if not predictions:
            return 0.0
        return float(sacrebleu.corpus_bleu(list(predictions), [list(targets)]).score)


class EditSimilarity(Metric):
    """The normalised Indel similarity of rapidfuzz's ``fuzz.ratio``, as code-completion
    benchmarks score next-line predictions."""

    name = "edit_sim"
    display_name = "Edit similarity"
    definition = "rapidfuzz fuzz.ratio of answer and target (100 = identical), mean over examples"

    def score(self, prediction: str, target: str, source: str = "") -> float:
        from rapidfuzz import fuzz

        return fuzz.ratio(prediction, target) / 100.0


__all__ = ["Accuracy", "Bleu", "EditSimilarity", "Perplexity", "RougeL", "exact_match", "normalize_answer"]
