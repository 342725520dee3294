"""Mean ± std (n) of run folders' metrics over seeds, and over orders: the numbers to quote.

One seed of a small stream moves AP by a few points, as much as the effects the methods' papers
report, so every table built from several runs (``retain sweep``, ``retain compare``,
``benchmarks/seed_summary.py``) goes through this module and says the same thing:

* **over seeds**: mean and *sample* standard deviation (ddof=1) of the runs' values; ``n`` counts
  the runs that have the value (an undefined metric, None, is left out, never read as 0); with
  ``n = 1`` the std is undefined and shown as "—".
* **over orders** ("overall", as papers report the mean over orders 1-3): the mean over orders of
  each order's seed mean, so an order with more seeds does not weigh more; its ± is the sample
  std of those per-order means (the order-to-order spread; the seed spread is in the per-order
  rows) and ``n`` is the number of orders.

A run contributes scalar values keyed by name. The main matrix (matrix.json) gives ``ap``,
``bwt``, ``fwt``, ``forgetting``, ... as in metrics.json, plus ``la``, the learning accuracy.
Further score families sit beside it under their own name, their keys prefixed by it
(``union.ap``): from their matrix file when the run folder holds one (:data:`MATRIX_FAMILIES`),
else from a ``{"union": {"ap": {"value": ...}}}`` block of metrics.json. Adding a family is one
entry in that table.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from retain.errors import RetainError
from retain.evaluation.cl_metrics import (
    METRIC_DEFINITIONS,
    AccuracyMatrix,
    Score,
    compute_cl_metrics,
    learning_accuracy,
    metric_label,
)
from retain.reporting.run_folder import MATRIX_JSON, RunFolder

MISSING = "—"

#: The metrics shown in seed tables, in column order (other keys are kept in the JSON).
SUMMARY_METRICS: tuple[str, ...] = ("ap", "bwt", "fwt", "forgetting", "la")

LA_DEFINITION = METRIC_DEFINITIONS["la"][1]

#: Score families a run folder may hold beside matrix.json: family name -> its matrix file.
MATRIX_FAMILIES: dict[str, str] = {"union": "matrix_union.json"}

#: Human titles of the families ("" is the run's main matrix, matrix.json).
FAMILY_TITLES: dict[str, str] = {"": "main matrix (matrix.json)", "union": "union label space"}

STD_DEFINITION = (
    "mean ± std (n) over seeds: std is the sample standard deviation (ddof=1) of the runs' values, "
    "n the number of runs with a defined value, std — when n = 1. Overall (over orders): the mean "
    "over orders of each order's seed mean; its ± is the sample std of those per-order means and "
    "n the number of orders."
)


# -- spreads ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """Mean, sample std (None when n < 2) and count of the defined values."""

    mean: Optional[float]
    std: Optional[float]
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "std": self.std, "n": self.n}


def spread(values: Iterable[Score]) -> Spread:
    """Mean and sample std (ddof=1) of the values that are not None."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return Spread(None, None, 0)
    std = statistics.stdev(present) if len(present) > 1 else None
    return Spread(statistics.fmean(present), std, len(present))


def spread_of_means(spreads: Iterable[Spread]) -> Spread:
    """The over-orders spread: mean and sample std of the given spreads' means."""
    return spread(s.mean for s in spreads)


def format_spread(value: Spread, digits: int = 2, show_n: bool = True) -> str:
    """'51.00 ± 1.41 (2)'; '40.00 ± — (1)' for one value; '—' when nothing is defined."""
    if value.mean is None:
        return MISSING
    std = MISSING if value.std is None else f"{value.std:.{digits}f}"
    text = f"{value.mean:.{digits}f} ± {std}"
    return f"{text} ({value.n})" if show_n else text


def metric_title(key: str) -> str:
    """'AP', 'LA', 'AP (union)' for 'ap', 'la', 'union.ap'."""
    family, _, name = key.rpartition(".")
    label = "LA" if name == "la" else metric_label(name)
    return f"{label} ({family})" if family else label


def family_keys(family: str, metrics: Sequence[str] = SUMMARY_METRICS) -> list[str]:
    return [f"{family}.{m}" if family else m for m in metrics]


# -- one run ---------------------------------------------------------------------------------------


def flatten_metrics(metrics: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Score], dict[str, list[Score]]]:
    """A metrics.json object as ({dotted key: value}, {dotted key: curve}).

    ``{"value": x}`` entries are scalars, lists of numbers (``ap_t``) are curves, other mappings
    are families whose keys get their name as prefix (``union.ap``).
    """
    values: dict[str, Score] = {}
    curves: dict[str, list[Score]] = {}
    for key, entry in metrics.items():
        dotted = f"{prefix}{key}"
        if isinstance(entry, Mapping) and "value" in entry:
            value = entry.get("value")
            values[dotted] = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None
        elif isinstance(entry, Mapping):
            inner_values, inner_curves = flatten_metrics(entry, f"{dotted}.")
            values.update(inner_values)
            curves.update(inner_curves)
        elif isinstance(entry, list) and all(v is None or isinstance(v, (int, float)) for v in entry):
            curves[dotted] = [None if v is None else float(v) for v in entry]
    return values, curves


def _read_matrix_file(path: Path) -> AccuracyMatrix:
    try:
        return AccuracyMatrix.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RetainError(f"{path}: cannot read JSON ({err})") from err
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise RetainError(f"{path}: malformed accuracy matrix ({err!r})") from err


@dataclass
class RunScores:
    """What one run folder contributes to a table: its config, matrices and values by key."""

    path: Path
    config: dict[str, Any]
    matrices: dict[str, AccuracyMatrix] = field(default_factory=dict)  # family -> matrix ("" = main)
    values: dict[str, Score] = field(default_factory=dict)
    curves: dict[str, list[Score]] = field(default_factory=dict)

    @property
    def main(self) -> Optional[AccuracyMatrix]:
        return self.matrices.get("")

    @property
    def task_names(self) -> list[str]:
        return list(self.main.task_names) if self.main else []

    @property
    def tasks_done(self) -> str:
        """'2/3' (tasks trained / tasks in the stream), '0/?' without a matrix."""
        return f"{self.main.tasks_trained}/{self.main.num_tasks}" if self.main else "0/?"

    @property
    def finished(self) -> bool:
        """Every task of the stream trained (a stopped or crashed run is not)."""
        return self.main is not None and self.main.num_tasks > 0 and self.main.tasks_trained == self.main.num_tasks

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    @property
    def name(self) -> str:
        """The folder's name (what the user typed; a copied folder keeps its config's name)."""
        return self.path.name

    def families(self) -> list[str]:
        """'' plus every family with a value, in the order first seen."""
        found = [""]
        for key in self.values:
            family = key.rpartition(".")[0]
            if family and family not in found:
                found.append(family)
        return found


def _matrix_scores(folder: RunFolder, matrix: AccuracyMatrix, prefix: str, extras: bool) -> tuple[dict[str, Score], dict[str, list[Score]]]:
    """Metrics recomputed from a matrix (today's definitions, as `retain report` does) plus LA."""
    try:
        metrics = compute_cl_metrics(
            matrix,
            single_task_scores=folder.read_single_task_scores(matrix.task_names) if extras else None,
            general=folder.read_general() if extras else None,
        )
    except ValueError as err:
        raise RetainError(f"{folder.path}: inconsistent run files ({err})") from err
    values, curves = flatten_metrics(metrics, prefix)
    values[f"{prefix}la"] = learning_accuracy(matrix)  # also in metrics.json since it was added there
    return values, curves


def read_run(path: Union[str, Path]) -> RunScores:
    """Read one run folder; values from its matrices, metrics.json filling what they cannot give."""
    folder = RunFolder(path)
    if not folder.path.is_dir():
        raise RetainError(f"{folder.path}: no such run folder")
    run = RunScores(folder.path, folder.read_config() or {})
    saved = folder.read_metrics() or {}
    run.values, run.curves = flatten_metrics(saved)
    if not folder.has_matrix():
        return run
    run.matrices[""] = folder.read_matrix()
    values, curves = _matrix_scores(folder, run.matrices[""], "", extras=True)
    run.values.update(values)
    run.curves.update(curves)
    for family, file_name in MATRIX_FAMILIES.items():
        matrix_path = folder.path / file_name
        if file_name == MATRIX_JSON or not matrix_path.is_file():
            continue
        run.matrices[family] = _read_matrix_file(matrix_path)
        values, curves = _matrix_scores(folder, run.matrices[family], f"{family}.", extras=False)
        run.values.update(values)
        run.curves.update(curves)
    return run


# -- groups of runs --------------------------------------------------------------------------------


@dataclass
class CellGrid:
    """Spreads of every matrix cell of a family: rows (before-training row included) x tasks.

    ``xs`` places each row on the task axis: 0 before training, i + 1 after the phase that ended
    with task i (a multi-task run has one row, at T), so runs with different phases line up.
    """

    row_labels: list[str]
    task_names: list[str]
    xs: list[int]
    cells: list[list[Spread]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_names": self.task_names,
            "row_labels": self.row_labels,
            "x": self.xs,
            "rows": [[s.to_dict() for s in row] for row in self.cells],
        }


def row_positions(matrix: AccuracyMatrix) -> list[int]:
    """x of every row of the matrix (see :class:`CellGrid`)."""
    return ([0] if matrix.has_initial_row else []) + [i + 1 for i in matrix.phase_task_index][: len(matrix.training_rows)]


@dataclass
class GroupSummary:
    """Runs of one configuration that differ only by seed, summarised value by value."""

    runs: list[RunScores]
    values: dict[str, Spread]
    curves: dict[str, list[Spread]]  # key -> one spread per training row (e.g. ap_t)
    grids: dict[str, CellGrid]  # family -> matrix cells

    @property
    def seeds(self) -> list[Any]:
        return [r.seed for r in self.runs]

    def curve_x(self, key: str) -> list[int]:
        """Task positions of a per-training-row curve (ap_t: 1..T, or T alone for multi-task)."""
        family = key.rpartition(".")[0]
        grid = self.grids.get(family)
        xs = [x for x in grid.xs if x > 0] if grid else []
        n = len(self.curves.get(key, []))
        return xs[:n] if len(xs) >= n else list(range(1, n + 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": [str(r.path) for r in self.runs],
            "seeds": self.seeds,
            "values": {k: v.to_dict() for k, v in self.values.items()},
            # each run's own value, aligned with "seeds": what paired (per-seed) comparisons read
            "per_run": {k: [r.values.get(k) for r in self.runs] for k in self.values},
            "curves": {k: [s.to_dict() for s in c] for k, c in self.curves.items()},
            "task_curves": {family or "main": grid.to_dict() for family, grid in self.grids.items()},
        }


def _keys_in_order(dicts: Iterable[Mapping[str, Any]]) -> list[str]:
    keys: list[str] = []
    for d in dicts:
        keys += [k for k in d if k not in keys]
    return keys


def _curve_spreads(curves: Sequence[Sequence[Score]]) -> list[Spread]:
    length = max((len(c) for c in curves), default=0)
    return [spread(c[t] if t < len(c) else None for c in curves) for t in range(length)]


def summarise_runs(runs: Sequence[RunScores]) -> GroupSummary:
    """Spreads of every value, curve and matrix cell over the runs (normally: over seeds)."""
    values = {k: spread(r.values.get(k) for r in runs) for k in _keys_in_order(r.values for r in runs)}
    curves = {k: _curve_spreads([r.curves.get(k, []) for r in runs]) for k in _keys_in_order(r.curves for r in runs)}
    grids: dict[str, CellGrid] = {}
    for family in _keys_in_order(r.matrices for r in runs):
        matrices = [r.matrices[family] for r in runs if family in r.matrices]
        first = matrices[0]
        if any(m.task_names != first.task_names for m in matrices):
            continue  # different streams: no cell-by-cell average
        n_rows = min(len(m.rows) for m in matrices)
        cells = [[spread(m.rows[j][i] for m in matrices) for i in range(first.num_tasks)] for j in range(n_rows)]
        grids[family] = CellGrid(list(first.row_labels[:n_rows]), list(first.task_names), row_positions(first)[:n_rows], cells)
    return GroupSummary(list(runs), values, curves, grids)


@dataclass
class OverallSummary:
    """Per-order group summaries combined: mean over orders of the seed means (module docstring)."""

    orders: list[Any]
    values: dict[str, Spread]
    curves: dict[str, list[Spread]]
    xs: dict[str, list[int]]

    def curve_x(self, key: str) -> list[int]:
        return self.xs.get(key) or list(range(1, len(self.curves.get(key, [])) + 1))

    def to_dict(self) -> dict[str, Any]:
        return {
            "orders": self.orders,
            "values": {k: v.to_dict() for k, v in self.values.items()},
            "curves": {k: [s.to_dict() for s in c] for k, c in self.curves.items()},
        }


def combine_orders(by_order: Mapping[Any, GroupSummary]) -> OverallSummary:
    """Over orders: per key, the spread of the orders' seed means (position by position for curves)."""
    groups = list(by_order.values())
    values = {k: spread_of_means(g.values.get(k, Spread(None, None, 0)) for g in groups)
              for k in _keys_in_order(g.values for g in groups)}
    curves: dict[str, list[Spread]] = {}
    xs: dict[str, list[int]] = {}
    for key in _keys_in_order(g.curves for g in groups):
        curves[key] = _curve_spreads([[s.mean for s in g.curves.get(key, [])] for g in groups])
        xs[key] = groups[0].curve_x(key)
    return OverallSummary(list(by_order), values, curves, xs)
