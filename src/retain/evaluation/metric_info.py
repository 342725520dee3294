"""What the report needs to know about a per-task metric: its name, direction and range.

Reports, plots and tables must not assume accuracy: a perplexity column has no 0-100 scale, is
better when lower, and its mean is a mean perplexity, not an "average accuracy". Every place that
words or draws a score asks this module, and only this module, which reads the three facts from
the metric registry's objects (``display_name``, ``higher_is_better``, ``range``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from retain.errors import ConfigError

PERCENT = (0.0, 100.0)


@dataclass(frozen=True)
class MetricInfo:
    """A per-task metric as reports see it."""

    name: str  # the key written in configs and matrix.json ("accuracy", "rouge_l", "perplexity")
    display: str  # how a reader calls it ("exact-match accuracy", "ROUGE-L F1", "perplexity")
    higher_is_better: bool
    bounds: Optional[tuple[float, float]]  # (0, 100) for percentages; None = unbounded

    @property
    def percent(self) -> bool:
        """Scores live on the fixed 0-100 scale (a shared colour scale and '%' wording make sense)."""
        return self.bounds == PERCENT

    @property
    def direction(self) -> str:
        return "higher is better" if self.higher_is_better else "lower is better"


#: matrix files written before per-task metric names were recorded: a 0-100 score
_LEGACY_SCORE = MetricInfo("score", "score", True, PERCENT)


def _reading_name(display: str) -> str:
    """'Accuracy' -> 'accuracy' for use inside a sentence; acronyms (ROUGE-L, BLEU) stay."""
    return display if sum(c.isupper() for c in display) > 1 else display[:1].lower() + display[1:]


def metric_info(name: str, higher_is_better: Optional[bool] = None) -> MetricInfo:
    """The facts about metric ``name`` from the metric registry (:mod:`retain.evaluation.metrics`).

    A name that no longer resolves (an import path not importable here) keeps the direction the
    run folder recorded (``higher_is_better``) and no assumed range.
    """
    if name == _LEGACY_SCORE.name:
        return _LEGACY_SCORE
    from retain.evaluation.metrics import get_metric  # noqa: PLC0415

    try:
        metric = get_metric(name)
    except ConfigError:
        return MetricInfo(name, name, True if higher_is_better is None else higher_is_better, None)
    bounds = tuple(float(b) for b in metric.range) if metric.range is not None else None
    return MetricInfo(name, _reading_name(metric.display_name or name), metric.higher_is_better, bounds)  # type: ignore[arg-type]


def legacy_metric_name(higher_is_better: bool) -> str:
    """The metric of a column whose name was not recorded (older matrix files): only the
    direction is known, and the one lower-is-better metric then was perplexity."""
    return "score" if higher_is_better else "perplexity"
