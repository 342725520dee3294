"""The metric registry: names to metric classes, plus user metrics by import path.

A task's ``metric`` is either a registered name (``retain list`` shows them) or
``package.module:ClassName``, a :class:`~retain.evaluation.metrics.base.Metric` subclass that is
imported when the stream is built, so a typo fails before any model is loaded.

Importing is running code, so an import path that comes from a run folder (``--resume``,
``report``, ``compare``, ``export``: the folder may be someone else's) is imported only when the
user names it again: inside :func:`importing_only` (:mod:`retain.import_paths`, the gate method
import paths share) any other import path is refused.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TypeVar

from retain.errors import ConfigError
from retain.evaluation.metrics.base import METRIC_INPUTS, Metric
from retain.evaluation.metrics.builtin import Accuracy, Bleu, EditSimilarity, Perplexity, RougeL
from retain.evaluation.metrics.sari import Sari
from retain.evaluation.metrics.trace_metrics import TRACE_METRICS
from retain.import_paths import check_importable, import_object, import_paths_in, importing_only

M = TypeVar("M", bound=type[Metric])

#: registered name -> metric class, in display order.
METRICS: dict[str, type[Metric]] = {}


def register_metric(cls: M) -> M:
    """Register a Metric subclass under its ``name`` (usable as a class decorator)."""
    _check_class(cls, cls.__name__)
    if not cls.name:
        raise ValueError(f"{cls.__name__}: a registered metric needs a name")
    METRICS[cls.name] = cls
    clear_metric_cache()
    return cls


def _check_class(obj: object, spec: str) -> None:
    if not (isinstance(obj, type) and issubclass(obj, Metric)):
        raise ConfigError(
            f"{spec} is not a metric: expected a subclass of retain.evaluation.metrics.Metric, got {obj!r}"
        )
    if obj.inputs not in METRIC_INPUTS:
        raise ConfigError(f"{spec}: inputs {obj.inputs!r} is not one of {', '.join(METRIC_INPUTS)}")


def _import_metric(spec: str) -> type[Metric]:
    obj = import_object(spec)
    _check_class(obj, spec)
    return obj  # type: ignore[return-value]


def get_metric(spec: str) -> Metric:
    """The metric instance for a registered name or an import path; ConfigError otherwise."""
    if spec not in METRICS and ":" in spec:
        check_importable(spec)
    return _metric_instance(spec)


def clear_metric_cache() -> None:
    """Forget the metric instances made so far (a test that registers metrics of its own)."""
    _metric_instance.cache_clear()


@lru_cache(maxsize=None)
def _metric_instance(spec: str) -> Metric:
    if spec in METRICS:
        return METRICS[spec]()
    if ":" in spec:
        cls = _import_metric(spec)
        metric = cls()
        if not metric.display_name:
            metric.display_name = cls.name or cls.__name__  # type: ignore[misc]
        return metric
    raise ConfigError(
        f"{spec!r} is not a metric (known: {', '.join(METRICS)}; or an import path 'package.module:ClassName')"
    )


def check_metric(spec: str, key: str) -> Metric:
    """:func:`get_metric` with the config key in front of the message."""
    try:
        return get_metric(spec)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def higher_is_better(spec: str) -> bool:
    return get_metric(spec).higher_is_better


# the TRACE variants after the built-ins they mirror, so `retain list` shows them together
for _builtin in (Accuracy, RougeL, Perplexity, Bleu, Sari, EditSimilarity, *TRACE_METRICS):
    register_metric(_builtin)

__all__ = ["METRICS", "check_metric", "clear_metric_cache", "get_metric", "higher_is_better", "import_paths_in", "importing_only", "register_metric"]
