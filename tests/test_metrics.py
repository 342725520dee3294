"""The metric registry: the interface reports read, built-in values, user metrics by import path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from retain.data.types import Example, Task
from retain.errors import ConfigError
from retain.evaluation import scoring
from retain.evaluation.metrics import METRICS, Metric, clear_metric_cache, get_metric, register_metric, sari

USER_METRIC = '''
from retain.evaluation.metrics import Metric

class LengthRatio(Metric):
    name = "length_ratio"
    display_name = "Length ratio"
    higher_is_better = False
    range = None

    def score(self, prediction, target, source=""):
        return len(prediction) / max(1, len(target))

    def aggregate(self, scores, predictions=(), targets=(), sources=()):
        return sum(scores) / len(scores)

class NotAMetric:
    pass
'''


def test_every_builtin_declares_what_reports_read() -> None:
    assert list(METRICS) == ["accuracy", "rouge_l", "perplexity", "bleu", "sari", "edit_sim",
                             "accuracy_trace", "bleu_trace", "rouge_l_trace", "sari_trace", "edit_sim_trace"]
    for name in METRICS:
        metric = get_metric(name)
        assert metric.name == name and metric.display_name and metric.definition
        assert metric.inputs in ("text", "likelihood")
    assert get_metric("perplexity").higher_is_better is False and get_metric("perplexity").range is None
    assert get_metric("bleu").higher_is_better is True and get_metric("bleu").range == (0.0, 100.0)


def test_existing_metrics_keep_their_values() -> None:
    accuracy, rouge = get_metric("accuracy"), get_metric("rouge_l")
    assert [accuracy.score(p, t) for p, t in [("an Apple.", "apple"), ("apples", "apple")]] == [1.0, 0.0]
    assert accuracy.aggregate([1.0, 0.0, 1.0, 1.0]) == 75.0
    assert rouge.score("a c d e", "a b c d") == pytest.approx(0.75) == scoring.rouge_l("a c d e", "a b c d")


def test_bleu_is_sacrebleus_corpus_bleu_and_edit_sim_rapidfuzz_ratio() -> None:
    import sacrebleu
    from rapidfuzz import fuzz

    predictions, targets = ["the cat sat on a mat", "hello there world"], ["the cat sat on the mat", "hello world"]
    bleu = get_metric("bleu")
    scores = [bleu.score(p, t) for p, t in zip(predictions, targets)]
    assert bleu.aggregate(scores, predictions, targets) == pytest.approx(sacrebleu.corpus_bleu(predictions, [targets]).score)
    assert scores[0] == pytest.approx(sacrebleu.sentence_bleu(predictions[0], [targets[0]]).score / 100)
    edit = get_metric("edit_sim")
    assert edit.score("return x", "return y") == pytest.approx(fuzz.ratio("return x", "return y") / 100) == pytest.approx(0.875)


def test_sari_by_hand() -> None:
    # source a b c, reference a c (deletes b), prediction a b (deletes c):
    # 1-grams: keep F1 1/2, delete precision 0, add (nothing, nothing) 1 -> 1/2
    # 2-grams: keep {ab} vs {} -> 0, delete {bc} right -> 1, add {} vs {ac} -> 0 -> 1/3
    # 3- and 4-grams: every operation empty -> 1
    assert sari("a b", "a c", "a b c") == pytest.approx((0.5 + 1 / 3 + 1 + 1) / 4)
    assert sari("A b c.", "a b c .", "a b c d .") == pytest.approx(1.0)  # lowercased, 13a tokens
    assert get_metric("sari").score("a b", "a c", "a b c") == sari("a b", "a c", "a b c")


def test_score_task_uses_the_tasks_metric(monkeypatch: pytest.MonkeyPatch) -> None:
    class _Encoder:
        kind = "causal"

        def target_tokens(self, item: Any) -> list[int]:
            return [1]

    answers = ["a b", "x y z"]
    monkeypatch.setattr(scoring, "generate_answers", lambda *args, **kwargs: list(answers))
    examples = [Example("a b c", "a c", "k0"), Example("q", "x y z", "k1")]
    results = {}
    for name in ("accuracy", "rouge_l", "sari"):
        task = Task("t", [], examples, metric=name)
        results[name] = scoring.score_task(None, _Encoder(), task, [object(), object()], examples, 2, None)  # type: ignore[arg-type]
    assert results["accuracy"].score == 50.0
    assert results["rouge_l"].score == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert results["sari"].score == pytest.approx(100 * (sari("a b", "a c", "a b c") + 1.0) / 2)
    assert [p["score"] for p in results["accuracy"].predictions] == [0.0, 1.0]


def test_user_metric_by_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_metrics.py").write_text(USER_METRIC)
    monkeypatch.syspath_prepend(str(tmp_path))
    metric = get_metric("my_metrics:LengthRatio")
    assert metric.display_name == "Length ratio" and not metric.higher_is_better
    assert Task("t", [], [], metric="my_metrics:LengthRatio").higher_is_better is False
    for spec, message in [
        ("no_such_module:X", "cannot import module 'no_such_module'"),
        ("my_metrics:Missing", "has no attribute 'Missing'"),
        ("my_metrics:NotAMetric", "is not a metric"),
        ("my_metrics", "is not a metric"),
    ]:
        with pytest.raises(ConfigError, match=message):
            get_metric(spec)


def test_register_metric_makes_a_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("retain.evaluation.metrics.registry.METRICS", dict(METRICS))

    @register_metric
    class Always(Metric):
        name = "always_one"
        display_name = "Always one"

        def score(self, prediction: str, target: str, source: str = "") -> float:
            return 1.0

    assert get_metric("always_one").aggregate([1.0, 1.0]) == 100.0
    clear_metric_cache()
    with pytest.raises(ValueError, match="needs a name"):
        register_metric(type("Nameless", (Metric,), {}))


def test_readme_metric_example_registers_and_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from tests.conftest import REPO

    text = (REPO / "README.md").read_text()
    section = text[text.index("### Metrics") : text.index("### The run folder")]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    monkeypatch.setattr("retain.evaluation.metrics.registry.METRICS", dict(METRICS))
    exec(compile(code, "README.md", "exec"), {})  # noqa: S102  (the project's own README)
    metric = get_metric("length_ratio")
    assert not metric.higher_is_better and metric.range is None
    scores = [metric.score("a b", "a b c d"), metric.score("a b c", "a b c")]
    assert metric.aggregate(scores) == pytest.approx(0.75)
    clear_metric_cache()
