"""Human-readable views of a run: the markdown report, terminal tables, and ``retain report``.

The report is always rebuilt from ``matrix.json`` (the source of truth), so that re-running
``retain report`` after a crash, or after a change in the metric code, gives current numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from retain.errors import RetainError
from retain.evaluation.cl_metrics import (
    METRIC_DEFINITIONS,
    AccuracyMatrix,
    Score,
    compute_cl_metrics,
    metric_label,
)
from retain.reporting.atomic import write_text_atomic
from retain.reporting.run_folder import AP_CURVE_FILE, HEATMAP_FILE, RunFolder

MISSING = "—"


def format_score(value: Score, digits: int = 2) -> str:
    """A score with ``digits`` decimals, or an em dash for an undefined value (never 0)."""
    return MISSING if value is None else f"{value:.{digits}f}"


def _task_header(name: str, higher_is_better: bool) -> str:
    return name if higher_is_better else f"{name} (↓)"


def _metric_items(metrics: Mapping[str, Any]) -> list[tuple[str, Mapping[str, Any]]]:
    """Metric entries in display order: known metrics first, then any other {"value": ...} entry."""
    keys = [k for k in METRIC_DEFINITIONS if k in metrics]
    keys += [k for k in metrics if k not in METRIC_DEFINITIONS and isinstance(metrics[k], Mapping)]
    return [(k, metrics[k]) for k in keys if isinstance(metrics[k], Mapping)]


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _summary_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_summary_value(v) for v in value) or MISSING
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={_summary_value(v)}" for k, v in value.items()) or MISSING
    return MISSING if value is None else str(value)


_LABEL_SPACE_TEXT = {
    "task": "task (each task predicted among its own labels: task identity given at test time; "
    "class-incremental scores in their own section)",
    "union": "union (every task predicted among all labels of the stream: class-incremental)",
}


def _scoring_text(kind: Optional[str], scoring: Optional[str]) -> Optional[str]:
    """How answers were scored, in words (the classifier ignores eval.scoring)."""
    if kind == "classifier":
        return "argmax over the label space"
    return {"generate": "greedy generation, scored by each task's metric (see Scoring)", "rank": "rank classification over the task's labels"}.get(scoring or "", scoring)


def summarize_config(config: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """The few settings a reader needs to interpret the numbers (model, methods, stream, scoring)."""
    config = config or {}
    model = config.get("model") or {}
    stream = config.get("stream") or {}
    evaluation = config.get("eval") or {}
    methods = []
    for entry in config.get("methods") or []:
        if isinstance(entry, Mapping):
            params = {k: v for k, v in entry.items() if k != "name"}
            inner = ", ".join(f"{k}={v}" for k, v in params.items())
            methods.append(f"{entry.get('name')}({inner})" if inner else str(entry.get("name")))
        else:
            methods.append(str(entry))
    stream_text = stream.get("benchmark")
    if stream.get("order") is not None:
        stream_text = f"{stream_text} (order {stream['order']})"
    summary: dict[str, Any] = {
        "run": config.get("name"),
        "model": model.get("name_or_path"),
        "methods": methods,
        "stream": stream_text,
        "kind": model.get("kind"),
        "label space": _LABEL_SPACE_TEXT.get(evaluation.get("label_space", ""), evaluation.get("label_space"))
        if model.get("kind") == "classifier" else None,
        "scoring": _scoring_text(model.get("kind"), evaluation.get("scoring")),
        "seed": config.get("seed"),
    }
    if model.get("lora", {}).get("enabled"):
        summary["model"] = f"{summary['model']} + LoRA r={model['lora'].get('r')}"
    return {k: v for k, v in summary.items() if v not in (None, [], "")}


def union_report_section(union: AccuracyMatrix, metrics: Mapping[str, Any]) -> tuple[str, str]:
    """The class-incremental view of a classifier run scored within task labels (same models)."""
    header = ["row", *union.task_names]
    lines = [
        "The matrix above predicts each task among its own labels (task identity given at test time). "
        "Here the same models predict among the labels of the whole stream (class-incremental); "
        "files matrix_union.json and metrics_union.json.", "",
        markdown_table(header, [[label, *(format_score(v) for v in row)] for label, row in zip(union.row_labels, union.rows)]),
        "",
        markdown_table(["metric", "value"], [[metric_label(k), format_score(e.get("value"))] for k, e in _metric_items(metrics)]),
    ]
    return "Class-incremental scores (label space: union)", "\n".join(lines)


def render_markdown(
    matrix: AccuracyMatrix,
    metrics: Mapping[str, Any],
    config_summary: Mapping[str, Any],
    extra_sections: Sequence[tuple[str, str]] = (),
) -> str:
    """The report.md text: configuration, matrix, metrics with their definitions, plots."""
    name = config_summary.get("run")
    parts = [f"# retain run report{f': {name}' if name else ''}", "", "## Configuration", ""]
    parts += [f"- **{key}**: {_summary_value(value)}" for key, value in config_summary.items() if key != "run"]
    if len(parts) == 4:
        parts.append("- (no configuration found)")

    parts += ["", "## Accuracy matrix", "",
              "Rows: the model after each training phase (row 0: before training); columns: tasks. "
              f"Scores on a 0-100 scale unless marked (↓ = lower is better); {MISSING} = not evaluated.", ""]
    header = ["row", *(_task_header(n, h) for n, h in zip(matrix.task_names, matrix.higher_is_better))]
    parts.append(markdown_table(header, [[label, *(format_score(v) for v in row)]
                                    for label, row in zip(matrix.row_labels, matrix.rows)]))

    parts += ["", "## Metrics", "",
              f"T = {matrix.tasks_trained} of {matrix.num_tasks} tasks trained. {MISSING} = undefined.", ""]
    parts.append(markdown_table(["metric", "value", "definition"],
                           [[metric_label(k), format_score(e.get("value")), str(e.get("definition", ""))]
                            for k, e in _metric_items(metrics)]))
    ap_t = metrics.get("ap_t") or []
    if ap_t:
        parts += ["", "AP_t (running): " + ", ".join(format_score(v) for v in ap_t)]

    parts += ["", "## Plots", "", f"![accuracy matrix heatmap]({HEATMAP_FILE})", "",
              f"![AP_t curve]({AP_CURVE_FILE})"]
    for title, body in extra_sections:
        parts += ["", f"## {title}", "", body.rstrip()]
    return "\n".join(parts) + "\n"


def _text_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Optional[set[int]] = None
) -> str:
    """Aligned columns: text left-aligned; the ``numeric`` columns (default: all but the first)
    right-aligned so that decimal points line up."""
    numeric = set(range(1, len(header))) if numeric is None else numeric
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(c).rjust(w) if i in numeric else str(c).ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = ["-" * w for w in widths]
    if len(header) - 1 not in numeric:  # a long free-text last column gets a rule as wide as its title
        rule[-1] = "-" * len(str(header[-1]))
    return "\n".join([line(header), line(rule), *(line(r) for r in rows)])


def format_matrix_text(matrix: AccuracyMatrix) -> str:
    """The matrix as an aligned plain-text table for the terminal."""
    header = ["row", *(_task_header(n, h) for n, h in zip(matrix.task_names, matrix.higher_is_better))]
    rows = [[label, *(format_score(v) for v in row)] for label, row in zip(matrix.row_labels, matrix.rows)]
    return _text_table(header, rows)


def format_metrics_text(metrics: Mapping[str, Any]) -> str:
    """Metrics as aligned text lines: label, value (right-aligned), definition."""
    rows = [[metric_label(k), format_score(e.get("value")), str(e.get("definition", ""))]
            for k, e in _metric_items(metrics)]
    text = _text_table(["metric", "value", "definition"], rows, numeric={1})
    lines = text.splitlines()
    ap_t = metrics.get("ap_t")
    if ap_t:
        lines.append("AP_t (running): " + ", ".join(format_score(v) for v in ap_t))
    return "\n".join(lines)


def render_report(
    run_dir: Union[str, Path], extra_sections: Optional[Sequence[tuple[str, str]]] = None
) -> str:
    """Rebuild metrics.json, report.md and the plots of a run folder; return the terminal text.

    Metrics are recomputed from matrix.json (plus general.json / single_task.json when present).
    ``extra_sections`` are (title, markdown) pairs appended to report.md, e.g. from methods; they
    are saved in the folder, and ``None`` reuses the saved ones, so ``retain report`` keeps them.
    """
    from retain.reporting.plots import plot_ap_curve, plot_heatmap  # matplotlib only when needed
    from retain.reporting.scoring import scoring_section

    folder = RunFolder(run_dir)
    if not folder.path.is_dir():
        raise RetainError(f"{folder.path}: no such run folder")
    matrix = folder.read_matrix()
    config = folder.read_config()
    general = folder.read_general()
    single = folder.read_single_task_scores(matrix.task_names)
    try:
        metrics = compute_cl_metrics(matrix, single_task_scores=single, general=general)
    except ValueError as err:
        raise RetainError(f"{folder.path}: inconsistent run files ({err})") from err
    folder.write_metrics(metrics)
    union = folder.read_union_matrix()
    scoring = scoring_section(matrix, general)
    union_section = [scoring] if scoring is not None else []
    if union is not None:
        union_metrics = compute_cl_metrics(union)
        folder.write_metrics(union_metrics, variant="union")
        union_section.append(union_report_section(union, union_metrics))
    plot_heatmap(matrix, folder.path / HEATMAP_FILE)
    plot_ap_curve(matrix, metrics, folder.path / AP_CURVE_FILE)
    summary = summarize_config(config)
    summary.setdefault("run", folder.path.name)
    if extra_sections is None:
        extra_sections = folder.read_report_sections()
    else:
        folder.write_report_sections(extra_sections)
    write_text_atomic(
        folder.report_path, render_markdown(matrix, metrics, summary, [*union_section, *extra_sections])
    )
    return format_matrix_text(matrix) + "\n\n" + format_metrics_text(metrics)
