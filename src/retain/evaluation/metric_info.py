"""What the report needs to know about a per-task metric: its name, direction and range.

Reports, plots and tables must not assume accuracy: a perplexity column has no 0-100 scale, is
better when lower, and its mean is a mean perplexity, not an "average accuracy". Every place that
words or draws a score asks this module, and only this module, so a metric defined elsewhere (a
registry of metric objects carrying the same three facts) plugs in here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from retain.data.types import METRIC_HIGHER_IS_BETTER

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


_KNOWN: dict[str, MetricInfo] = {
    "accuracy": MetricInfo("accuracy", "accuracy", True, PERCENT),
    "rouge_l": MetricInfo("rouge_l", "ROUGE-L F1", True, PERCENT),
    "perplexity": MetricInfo("perplexity", "perplexity", False, None),
    # matrix files written before per-task metric names were recorded: a 0-100 score
    "score": MetricInfo("score", "score", True, PERCENT),
}


def metric_info(name: str, higher_is_better: Optional[bool] = None) -> MetricInfo:
    """The facts about metric ``name``; an unknown name gets its declared direction (or
    ``higher_is_better``) and no assumed range."""
    if name in _KNOWN:
        return _KNOWN[name]
    higher = METRIC_HIGHER_IS_BETTER.get(name, True if higher_is_better is None else higher_is_better)
    return MetricInfo(name, name.replace("_", " "), higher, None)


def legacy_metric_name(higher_is_better: bool) -> str:
    """The metric of a column whose name was not recorded (older matrix files): only the
    direction is known, and the one lower-is-better metric then was perplexity."""
    return "score" if higher_is_better else "perplexity"
