"""Per-task metrics: the :class:`Metric` interface, the built-in metrics and their registry.

Continual-learning metrics over the accuracy matrix (AP, BWT, ...) are in
:mod:`retain.evaluation.cl_metrics`; this package scores one task's predictions.
"""

from retain.evaluation.metrics.base import METRIC_INPUTS, Metric
from retain.evaluation.metrics.builtin import (
    Accuracy, Bleu, EditSimilarity, Perplexity, RougeL, exact_match, normalize_answer,
)
from retain.evaluation.metrics.registry import (
    METRICS, check_metric, clear_metric_cache, get_metric, higher_is_better, importing_only, register_metric,
)
from retain.evaluation.metrics.sari import Sari, sari, sari_counted
from retain.evaluation.metrics.trace_metrics import BleuTrace, EditSimTrace, RougeLTrace, SariTrace

__all__ = [
    "METRICS", "METRIC_INPUTS", "Accuracy", "Bleu", "BleuTrace", "EditSimTrace", "EditSimilarity", "Metric",
    "Perplexity", "RougeL", "RougeLTrace", "Sari", "SariTrace", "check_metric", "clear_metric_cache",
    "exact_match", "get_metric", "higher_is_better", "importing_only", "normalize_answer", "register_metric",
    "sari", "sari_counted",
]
