"""Continual-learning metrics over the accuracy matrix.

The formulas are the ones of ``docs/metrics.md`` and nothing else: every value carries the text of
its definition so that a number can never be quoted without saying which BWT (or FWT) it is.

Conventions used throughout:

* ``a[j][i]`` is the score on task ``i`` after training phase ``j``; row 0 (optional) is the model
  before any training and provides ``b[i]`` for FWT.
* ``a[i][i]`` is read from the row written right after task ``i`` was trained (located through
  ``phase_task_index``), so that multi-task training (one row for all tasks) and partially completed
  runs need no special casing: an entry that does not exist makes the metric ``None``.
* ``T`` is the number of tasks trained so far (``phase_task_index[-1] + 1``); for a crashed or
  stopped run the metrics describe the stream up to the last completed row.
* For a lower-is-better task (perplexity) every difference is negated and the ``max`` of
  Forgetting becomes a ``min``, so a negative BWT always means forgetting and a positive FWT always
  means improvement, whatever the task's metric.
* Undefined values are ``None``, never 0 (T=1 BWT, FWT without row 0, a missing cell).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, Union

Score = Optional[float]
ScoresLike = Union[Sequence[Score], Mapping[str, Score]]

#: Suffix shared by every metric built from differences of scores.
DIRECTION_NOTE = "sign flipped for lower-is-better tasks"

#: metric key -> (display label, definition). The order is the display order.
METRIC_DEFINITIONS: dict[str, tuple[str, str]] = {
    "ap": ("AP", "AP = (1/T) sum_i a[T][i] (mean over tasks of the final row)"),
    "la": (
        "LA (learning accuracy)",
        "LA = (1/T) sum_i a[i][i] (mean of the diagonal: each task's score right after it was trained; "
        "plasticity, beside BWT's stability)",
    ),
    "bwt": (
        "BWT (GEM)",
        "BWT_GEM = (1/(T-1)) sum_{i<T} (a[T][i] - a[i][i]); negative = forgetting; " + DIRECTION_NOTE,
    ),
    "bwt_trace": (
        "BWT (TRACE/SEEKR code)",
        "BWT_TRACE = (1/T) sum_{i<=T} (a[T][i] - a[i][i]) = BWT_GEM x (T-1)/T; " + DIRECTION_NOTE,
    ),
    "forgetting": (
        "Forgetting (Chaudhry)",
        "F = (1/(T-1)) sum_{i<T} (max_{l in [i,T-1]} a[l][i] - a[T][i]); positive = forgetting; "
        "min instead of max and " + DIRECTION_NOTE,
    ),
    "fwt": (
        "FWT (GEM)",
        "FWT_GEM = (1/(T-1)) sum_{i>=2} (a[i-1][i] - b[i]), b = row 0 (before training); " + DIRECTION_NOTE,
    ),
    "fwt_single_task": (
        "FWT (vs single-task)",
        "FWT_ST = (1/T) sum_i (a[i][i] - s[i]), s = single-task fine-tuning score; " + DIRECTION_NOTE,
    ),
    "general_delta": (
        "General ability delta",
        "dG = (1/M) sum_k (G[T][k] - G[0][k]) over M held-out general sets; " + DIRECTION_NOTE,
    ),
}


def metric_label(key: str) -> str:
    """The human label of a metric key (the key itself for unknown keys)."""
    return METRIC_DEFINITIONS.get(key, (key, ""))[0]


def _as_score(value: Any) -> Score:
    return None if value is None else float(value)


def _scores_list(scores: ScoresLike, names: Sequence[str], what: str) -> list[Score]:
    """Align ``scores`` (a list, or a mapping by name) with ``names``; unknown names are errors."""
    if isinstance(scores, Mapping):
        unknown = sorted(set(scores) - set(names))
        if unknown:
            raise ValueError(f"{what}: unknown names {unknown}; expected some of {list(names)}")
        return [_as_score(scores.get(name)) for name in names]
    values = list(scores)
    if len(values) != len(names):
        raise ValueError(f"{what}: {len(values)} scores for {len(names)} columns {list(names)}")
    return [_as_score(v) for v in values]


@dataclass
class AccuracyMatrix:
    """The accuracy matrix of a run: the primary artefact, saved after every training phase.

    ``rows[j][i]`` is the score (0-100 scale, or the task's own scale such as perplexity) on task
    ``i`` after row ``j``; ``None`` = not evaluated. When ``has_initial_row`` is true, row 0 holds the
    scores before any training. ``phase_task_index`` has one entry per *training* row: the index of
    the last task that row's phase trained (multi-task training: one row with index ``T-1``).
    ``task_metrics`` names each column's metric (``accuracy``, ``perplexity`` ...) so that reports
    word and draw it correctly; empty in files written before it was recorded.
    """

    task_names: list[str]
    higher_is_better: list[bool]
    row_labels: list[str] = field(default_factory=list)
    rows: list[list[Score]] = field(default_factory=list)
    has_initial_row: bool = False
    phase_task_index: list[int] = field(default_factory=list)
    #: each task's metric (registry name or import path; :mod:`retain.evaluation.metrics`); empty
    #: in run folders written before metrics were recorded
    task_metrics: list[str] = field(default_factory=list)
    #: each task's answer post-processing rule (:mod:`retain.evaluation.answer_processing`; "" for
    #: none), so the report can say what was scored; empty when no task has one
    task_answer_processing: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    # -- structure ---------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise ValueError when the parts of the matrix disagree with each other."""
        n = len(self.task_names)
        if len(set(self.task_names)) != n:
            raise ValueError(f"task names are not unique: {self.task_names}")
        if len(self.higher_is_better) != n:
            raise ValueError(f"{len(self.higher_is_better)} directions for {n} tasks")
        if self.task_metrics and len(self.task_metrics) != n:
            raise ValueError(f"{len(self.task_metrics)} metrics for {n} tasks")
        if self.task_answer_processing and len(self.task_answer_processing) != n:
            raise ValueError(f"{len(self.task_answer_processing)} answer post-processing rules for {n} tasks")
        if len(self.row_labels) != len(self.rows):
            raise ValueError(f"{len(self.row_labels)} row labels for {len(self.rows)} rows")
        for label, row in zip(self.row_labels, self.rows):
            if len(row) != n:
                raise ValueError(f"row {label!r} has {len(row)} scores for {n} tasks")
        # has_initial_row may be set on an empty matrix: row 0 is then the next row to be added
        n_training = max(0, len(self.rows) - int(self.has_initial_row))
        if len(self.phase_task_index) != n_training:
            raise ValueError(f"{len(self.phase_task_index)} phase task indices for {n_training} training rows")
        previous = -1
        for index in self.phase_task_index:
            if not previous < index < n:
                raise ValueError(
                    f"phase task indices must increase within [0, {n - 1}]: {self.phase_task_index}"
                )
            previous = index

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    @property
    def metric_names(self) -> list[str]:
        """Each column's metric; for older files, the name implied by its direction."""
        from retain.evaluation.metric_info import legacy_metric_name  # noqa: PLC0415

        return list(self.task_metrics) or [legacy_metric_name(h) for h in self.higher_is_better]

    @property
    def initial_row(self) -> Optional[list[Score]]:
        """Row 0 (before training) or None when the run did not score the untrained model."""
        return self.rows[0] if self.has_initial_row and self.rows else None

    @property
    def training_rows(self) -> list[list[Score]]:
        return self.rows[1:] if self.has_initial_row else list(self.rows)

    @property
    def training_row_labels(self) -> list[str]:
        return self.row_labels[1:] if self.has_initial_row else list(self.row_labels)

    @property
    def tasks_trained(self) -> int:
        """How many tasks of the stream the completed rows have trained (T of a partial run)."""
        return self.phase_task_index[-1] + 1 if self.phase_task_index else 0

    def row_after_task(self, task_index: int) -> Optional[list[Score]]:
        """The row written right after ``task_index`` was trained (a[i][·]), if there is one."""
        for row, index in zip(self.training_rows, self.phase_task_index):
            if index == task_index:
                return row
        return None

    # -- building ----------------------------------------------------------------------------

    def add_initial_row(self, scores: ScoresLike, label: str = "before training") -> None:
        """Add row 0 (scores of the untrained model); only allowed on an empty matrix.

        ``has_initial_row`` becomes true (it may also be set when the empty matrix is created).
        """
        if self.rows:
            raise ValueError("the initial row must be the first row")
        self.rows.append(_scores_list(scores, self.task_names, label))
        self.row_labels.append(label)
        self.has_initial_row = True

    def add_training_row(self, task_index: int, scores: ScoresLike, label: Optional[str] = None) -> None:
        """Add the row scored after a phase that finished task ``task_index``."""
        label = label if label is not None else f"after {self.task_names[task_index]}"
        row = _scores_list(scores, self.task_names, label)
        self.rows.append(row)
        self.row_labels.append(label)
        self.phase_task_index.append(task_index)
        try:
            self.validate()
        except ValueError:
            self.rows.pop()
            self.row_labels.pop()
            self.phase_task_index.pop()
            raise

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = {
            "task_names": list(self.task_names),
            "higher_is_better": list(self.higher_is_better),
            "row_labels": list(self.row_labels),
            "rows": [[_as_score(v) for v in row] for row in self.rows],
            "has_initial_row": self.has_initial_row,
            "phase_task_index": list(self.phase_task_index),
        }
        if self.task_metrics:
            data["task_metrics"] = list(self.task_metrics)
        if any(self.task_answer_processing):
            data["task_answer_processing"] = list(self.task_answer_processing)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AccuracyMatrix":
        """Inverse of :meth:`to_dict`; raises ValueError/KeyError/TypeError on malformed data."""
        return cls(
            task_names=[str(name) for name in data["task_names"]],
            higher_is_better=[bool(h) for h in data["higher_is_better"]],
            row_labels=[str(label) for label in data["row_labels"]],
            rows=[[_as_score(v) for v in row] for row in data["rows"]],
            has_initial_row=bool(data.get("has_initial_row", False)),
            phase_task_index=[int(i) for i in data.get("phase_task_index", [])],
            task_metrics=[str(m) for m in data.get("task_metrics", [])],
            task_answer_processing=[str(r) for r in data.get("task_answer_processing", [])],
        )


@dataclass
class GeneralScores:
    """Scores on M held-out general-ability sets: row 0 before training, then after each phase."""

    names: list[str]
    higher_is_better: list[bool]
    rows: list[list[Score]] = field(default_factory=list)
    row_labels: list[str] = field(default_factory=list)
    #: each set's metric, as :attr:`AccuracyMatrix.task_metrics`
    metrics: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.metrics and len(self.metrics) != len(self.names):
            raise ValueError(f"{len(self.metrics)} metrics for {len(self.names)} general sets")
        if len(self.higher_is_better) != len(self.names):
            raise ValueError(f"{len(self.higher_is_better)} directions for {len(self.names)} general sets")
        for row in self.rows:
            if len(row) != len(self.names):
                raise ValueError(f"a general row has {len(row)} scores for {len(self.names)} sets")

    @property
    def metric_names(self) -> list[str]:
        from retain.evaluation.metric_info import legacy_metric_name  # noqa: PLC0415

        return list(self.metrics) or [legacy_metric_name(h) for h in self.higher_is_better]

    def to_dict(self) -> dict[str, Any]:
        data = {
            "names": list(self.names),
            "higher_is_better": list(self.higher_is_better),
            "rows": [[_as_score(v) for v in row] for row in self.rows],
            "row_labels": list(self.row_labels),
        }
        if self.metrics:
            data["metrics"] = list(self.metrics)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GeneralScores":
        return cls(
            names=[str(n) for n in data["names"]],
            higher_is_better=[bool(h) for h in data["higher_is_better"]],
            rows=[[_as_score(v) for v in row] for row in data["rows"]],
            row_labels=[str(label) for label in data.get("row_labels", [])],
            metrics=[str(m) for m in data.get("metrics", [])],
        )


# -- metrics -------------------------------------------------------------------------------------


def _mean(values: Sequence[Score]) -> Score:
    """Mean of the values; None when there are none or any is missing (never a silent partial mean)."""
    if not values or any(v is None for v in values):
        return None
    return sum(values) / len(values)  # type: ignore[arg-type]


def _signed_diff(later: Score, earlier: Score, higher_is_better: bool) -> Score:
    """later - earlier, oriented so that positive always means "better"."""
    if later is None or earlier is None:
        return None
    diff = later - earlier
    return diff if higher_is_better else -diff


def _sum_or_none(values: Sequence[Score]) -> Score:
    if any(v is None for v in values):
        return None
    return float(sum(values))  # type: ignore[arg-type]


def _cell(row: Optional[list[Score]], i: int) -> Score:
    return None if row is None else row[i]


def running_ap(matrix: AccuracyMatrix) -> list[Score]:
    """AP_t for every training row: the mean over the tasks trained so far (i <= t)."""
    return [
        _mean(row[: index + 1]) for row, index in zip(matrix.training_rows, matrix.phase_task_index)
    ]


def _bwt_sum(matrix: AccuracyMatrix, final: list[Score], T: int) -> Score:
    diffs = [
        _signed_diff(final[i], _cell(matrix.row_after_task(i), i), matrix.higher_is_better[i])
        for i in range(T - 1)
    ]
    return _sum_or_none(diffs)


def _forgetting(matrix: AccuracyMatrix, final: list[Score], T: int) -> Score:
    """Chaudhry forgetting: best score over rows [i, T-1] minus the final score, per old task."""
    earlier_rows = list(zip(matrix.training_rows[:-1], matrix.phase_task_index[:-1]))
    drops: list[Score] = []
    for i in range(T - 1):
        history = [row[i] for row, index in earlier_rows if index >= i]
        if matrix.row_after_task(i) is None or not history or any(v is None for v in history):
            return None
        hib = matrix.higher_is_better[i]
        best = max(history) if hib else min(history)  # type: ignore[type-var]
        drops.append(_signed_diff(best, final[i], hib))
    return _mean(drops)


def _fwt_gem(matrix: AccuracyMatrix, T: int) -> Score:
    initial = matrix.initial_row
    if initial is None or T < 2:
        return None
    diffs = [
        _signed_diff(_cell(matrix.row_after_task(i - 1), i), initial[i], matrix.higher_is_better[i])
        for i in range(1, T)
    ]
    return _mean(diffs)


def _fwt_single_task(matrix: AccuracyMatrix, single: Sequence[Score], T: int) -> Score:
    if len(single) != matrix.num_tasks:
        raise ValueError(f"{len(single)} single-task scores for {matrix.num_tasks} tasks")
    diffs = [
        _signed_diff(_cell(matrix.row_after_task(i), i), _as_score(single[i]), matrix.higher_is_better[i])
        for i in range(T)
    ]
    return _mean(diffs)


def learning_accuracy(matrix: AccuracyMatrix) -> Score:
    """Mean of a[i][i] over the tasks trained so far (None if a diagonal cell is missing, or for a
    multi-task run, whose one row follows no single task)."""
    diagonal = []
    for i in range(matrix.tasks_trained):
        row = matrix.row_after_task(i)
        if row is None or row[i] is None:
            return None
        diagonal.append(row[i])
    return sum(diagonal) / len(diagonal) if diagonal else None


def never_learned(matrix: AccuracyMatrix) -> list[tuple[str, float, float]]:
    """Tasks whose score right after training is no better than before any training:
    (name, row-0 score, diagonal score). Needs row 0; a missing cell is not judged."""
    initial = matrix.initial_row
    if initial is None:
        return []
    found = []
    for i in range(matrix.tasks_trained):
        after = _cell(matrix.row_after_task(i), i)
        if after is None or initial[i] is None:
            continue
        gain = _signed_diff(after, initial[i], matrix.higher_is_better[i])
        if gain is not None and gain <= 0:
            found.append((matrix.task_names[i], float(initial[i]), float(after)))
    return found


def general_delta(general: GeneralScores) -> Score:
    """Mean over held-out sets of (last row - row 0), oriented so that positive = better."""
    if len(general.rows) < 2 or not general.names:
        return None
    first, last = general.rows[0], general.rows[-1]
    return _mean([_signed_diff(last[k], first[k], hib) for k, hib in enumerate(general.higher_is_better)])


def compute_cl_metrics(
    matrix: AccuracyMatrix,
    single_task_scores: Optional[Sequence[Score]] = None,
    general: Optional[GeneralScores] = None,
) -> dict[str, Any]:
    """All metrics of ``docs/metrics.md`` on the last training row of ``matrix``.

    Returns ``{key: {"value": float | None, "definition": str}}`` for each key of
    :data:`METRIC_DEFINITIONS`, plus ``"ap_t"``: the running AP, one value per training row.
    """
    values: dict[str, Score] = {key: None for key in METRIC_DEFINITIONS}
    training = matrix.training_rows
    T = matrix.tasks_trained
    if training:
        final = training[-1]
        values["ap"] = _mean(final[:T])
        values["la"] = learning_accuracy(matrix)
        if T >= 2:
            total = _bwt_sum(matrix, final, T)
            if total is not None:
                values["bwt"] = total / (T - 1)
                values["bwt_trace"] = total / T  # the i = T term is a[T][T] - a[T][T] = 0
            values["forgetting"] = _forgetting(matrix, final, T)
            values["fwt"] = _fwt_gem(matrix, T)
        if single_task_scores is not None:
            values["fwt_single_task"] = _fwt_single_task(matrix, single_task_scores, T)
    if general is not None:
        values["general_delta"] = general_delta(general)
    result: dict[str, Any] = {
        key: {"value": values[key], "definition": definition}
        for key, (_, definition) in METRIC_DEFINITIONS.items()
    }
    result["ap_t"] = running_ap(matrix)
    return result

