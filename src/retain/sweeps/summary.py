"""The sweep's table: mean ± std (n) per method and metric, per order and over orders.

Written to the sweep folder as summary.json (everything, including curves and per-task cells),
summary.md (the tables, overall first, with the definition of ±), summary.csv (one line per
method, scope and metric, for spreadsheets) and PNG plots: AP_t with ±std bands per method
(``ap_t_<scope>.png``) and each task's score through the stream (``tasks_<scope>.png``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

from retain.reporting.aggregate import (
    FAMILY_TITLES,
    LA_DEFINITION,
    STD_DEFINITION,
    GroupSummary,
    OverallSummary,
    RunScores,
    Spread,
    combine_orders,
    family_keys,
    format_spread,
    metric_title,
    read_run,
    summarise_runs,
)
from retain.reporting.atomic import write_json_atomic, write_text_atomic
from retain.reporting.tables import markdown_table
from retain.sweeps.plan import PlannedRun
from retain.sweeps.spec import SweepSpec

SUMMARY_JSON, SUMMARY_MD, SUMMARY_CSV = "summary.json", "summary.md", "summary.csv"
OVERALL = "overall"


def scope_name(order: Optional[int]) -> str:
    return "stream" if order is None else f"order {order}"


def _slug(scope: str, family: str) -> str:
    return scope.replace(" ", "") + (f"_{family}" if family else "")


@dataclass
class MethodSummary:
    """One row of the tables: a methods entry (in one setting) over the sweep's orders and seeds."""

    setting: str
    method: str
    methods: list[Any]
    by_order: dict[Optional[int], GroupSummary] = field(default_factory=dict)
    overall: Optional[OverallSummary] = None

    @property
    def label(self) -> str:
        return f"{self.method} [{self.setting}]" if self.setting else self.method

    def to_dict(self) -> dict[str, Any]:
        return {
            "setting": self.setting,
            "method": self.method,
            "methods": self.methods,
            "orders": {scope_name(o): g.to_dict() for o, g in self.by_order.items()},
            OVERALL: self.overall.to_dict() if self.overall else None,
        }


@dataclass
class SweepSummary:
    name: str
    orders: list[Optional[int]]
    rows: list[MethodSummary]
    families: list[str]
    missing: list[str]  # planned runs without a finished run folder

    def scopes(self) -> list[tuple[str, list[tuple[MethodSummary, Union[GroupSummary, OverallSummary]]]]]:
        """(scope title, rows) for the tables: overall first when there are several orders."""
        scopes = []
        if len(self.orders) > 1:
            scopes.append((OVERALL, [(r, r.overall) for r in self.rows if r.overall is not None]))
        for order in self.orders:
            scopes.append((scope_name(order), [(r, r.by_order[order]) for r in self.rows if order in r.by_order]))
        return scopes

    def to_dict(self) -> dict[str, Any]:
        return {
            "sweep": self.name,
            "std": STD_DEFINITION,
            "metrics": {k: metric_title(k) for f in self.families for k in family_keys(f)},
            "la": LA_DEFINITION,
            "orders": self.orders,
            "rows": [r.to_dict() for r in self.rows],
            "missing_runs": self.missing,
        }


def summarise_sweep(spec: SweepSpec, runs: Sequence[PlannedRun]) -> SweepSummary:
    """Read the finished runs of the plan and pool them per methods entry, setting and order."""
    rows: dict[tuple[str, str], MethodSummary] = {}
    by_cell: dict[tuple[str, str, Optional[int]], list[RunScores]] = {}
    missing: list[str] = []
    families: list[str] = []
    for run in runs:
        rows.setdefault((run.setting, run.method), MethodSummary(run.setting, run.method, run.config["methods"]))
        scores = read_run(run.run_dir) if run.run_dir.is_dir() else None
        if scores is None or not scores.finished:
            missing.append(run.name)
            continue
        families += [f for f in scores.families() if f not in families]
        by_cell.setdefault((run.setting, run.method, run.order), []).append(scores)
    for (setting, method, order), cell_runs in by_cell.items():
        rows[(setting, method)].by_order[order] = summarise_runs(cell_runs)
    for row in rows.values():
        row.by_order = {o: row.by_order[o] for o in spec.orders if o in row.by_order}
        if len(spec.orders) > 1 and row.by_order:
            row.overall = combine_orders(row.by_order)
    return SweepSummary(spec.name, list(spec.orders), list(rows.values()), families or [""], missing)


# -- tables ----------------------------------------------------------------------------------------


def _runs_cell(scope: str, summary: Union[GroupSummary, OverallSummary]) -> str:
    if isinstance(summary, OverallSummary):
        return ", ".join(scope_name(o) for o in summary.orders)
    return ", ".join(str(s) for s in summary.seeds)


def scope_table(summary: SweepSummary, scope: str, rows: Sequence[tuple[MethodSummary, Any]], family: str) -> str:
    keys = family_keys(family)
    header = ["method", "orders" if scope == OVERALL else "seeds", *(metric_title(k) for k in keys)]
    body = [[row.label, _runs_cell(scope, s), *(format_spread(s.values.get(k, Spread(None, None, 0))) for k in keys)]
            for row, s in rows]
    return markdown_table(header, body)


def render_markdown(summary: SweepSummary, plots: Sequence[str] = ()) -> str:
    parts = [f"# Sweep {summary.name}", "", f"Values: {STD_DEFINITION}", "", f"{LA_DEFINITION}.", ""]
    if summary.missing:
        parts += [f"Not finished (left out): {', '.join(summary.missing)}.", ""]
    for family in summary.families:
        for scope, rows in summary.scopes():
            title = scope if len(summary.families) == 1 else f"{scope}, {FAMILY_TITLES.get(family, family)}"
            parts += [f"## {title}", "", scope_table(summary, scope, rows, family), ""]
    if plots:
        parts += ["## Plots", ""] + [f"![{name}]({name})" for name in plots] + [""]
    return "\n".join(parts)


def render_csv(summary: SweepSummary) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["setting", "method", "scope", "metric", "mean", "std", "n", "seeds_or_orders"])
    for scope, rows in summary.scopes():
        for row, s in rows:
            for key, value in s.values.items():
                writer.writerow([row.setting, row.method, scope, key, _num(value.mean), _num(value.std), value.n,
                                 _runs_cell(scope, s)])
    return buffer.getvalue()


def _num(value: Optional[float]) -> str:
    return "" if value is None else repr(float(value))


# -- files -----------------------------------------------------------------------------------------


def write_plots(summary: SweepSummary, folder: Path) -> list[str]:
    from retain.reporting.band_plots import plot_curve_bands, plot_task_bands  # matplotlib on demand

    names: list[str] = []
    for family in summary.families:
        key = family_keys(family, ("ap_t",))[0]
        suffix = f" ({FAMILY_TITLES.get(family, family)})" if family else ""
        for scope, rows in summary.scopes():
            series = {row.label: (s.curve_x(key), s.curves[key]) for row, s in rows if s.curves.get(key)}
            if series:
                name = f"ap_t_{_slug(scope, family)}.png"
                plot_curve_bands(series, folder / name, f"AP after each task, {scope}{suffix}: mean ± std")
                names.append(name)
            grids = {row.label: s.grids[family] for row, s in rows if isinstance(s, GroupSummary) and family in s.grids}
            if grids:
                name = f"tasks_{_slug(scope, family)}.png"
                plot_task_bands(grids, folder / name, f"Score per task, {scope}{suffix}: mean ± std over seeds")
                names.append(name)
    return names


def write_summary(summary: SweepSummary, folder: Path) -> str:
    """Write the JSON, Markdown, CSV and plots; return the Markdown text."""
    plots = write_plots(summary, folder)
    text = render_markdown(summary, plots)
    write_json_atomic(folder / SUMMARY_JSON, summary.to_dict())
    write_text_atomic(folder / SUMMARY_MD, text)
    write_text_atomic(folder / SUMMARY_CSV, render_csv(summary))
    return text

