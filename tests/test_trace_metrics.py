"""The TRACE-compatible metrics agree with transcriptions of TRACE's published formulas, and
ROUGE-L scores non-Latin scripts on their words."""

from __future__ import annotations

import pytest

from retain.evaluation.metrics import get_metric
from retain.evaluation.metrics.tokens import multilingual_tokens

ASCII_PAIRS = [
    ("the cat sat on the mat", "the cat is on the mat"),
    ("A quick brown fox jumps over the lazy dog.", "the quick brown fox jumped over a lazy dog"),
    ("Revenue rose 12% in Q3, beating forecasts.", "Q3 revenue rose by 12 percent"),
    ("don't stop-believing; hold_on", "Don't stop believing, hold on!"),
    ("", "nothing predicted"),
    ("x y z", "a b c"),
    ("The Fed kept rates at 5.25%.", "the fed held rates at 5.25 %"),
]


def test_rouge_l_is_rouge_score_on_ascii_text() -> None:
    from rouge_score import rouge_scorer

    reference = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    rouge = get_metric("rouge_l")
    for prediction, target in ASCII_PAIRS:
        assert rouge.score(prediction, target) == reference.score(target, prediction)["rougeL"].fmeasure


def test_rouge_l_scores_chinese_and_german_on_their_words() -> None:
    rouge = get_metric("rouge_l")
    assert multilingual_tokens("支持Größe 2") == ["支", "持", "größe", "2"]
    assert rouge.score("支持", "支持") == 1.0  # rouge-score's own tokens: none, score 0
    # 4 characters against 5, LCS 我喜欢猫 (4): P 1, R 4/5
    assert rouge.score("我喜欢猫", "我很喜欢猫") == pytest.approx(2 * 1 * 0.8 / 1.8)
    assert rouge.score("Die Größe ist gut", "die Größe war gut") == pytest.approx(0.75)
    assert rouge.score("Größe", "Grösse") == 0.0  # whole words: no partial credit for 'gr'
