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
    GeneralScores,
    Score,
    compute_cl_metrics,
    metric_label,
    never_learned,
)
from retain.reporting.atomic import write_text_atomic
from retain.reporting.metric_text import ap_wording, la_wording, matrix_title, never_learned_text, scale_text, scoring_text
from retain.reporting.run_folder import AP_CURVE_FILE, GENERAL_PLOT_FILE, HEATMAP_FILE, RunFolder
from retain.reporting.tables import markdown_table, text_table

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


def metric_rows(metrics: Mapping[str, Any], matrix: Optional[AccuracyMatrix] = None) -> list[list[str]]:
    """[label, value, definition] per metric; AP and LA are named for what the matrix holds
    (a mean perplexity is called one, never an average accuracy)."""
    wording: dict[str, tuple[str, str]] = {}
    if matrix is not None:
        wording = {"ap": ap_wording(matrix), "la": la_wording(matrix)}
    rows = []
    for key, entry in _metric_items(metrics):
        label, note = wording.get(key, (metric_label(key), ""))
        definition = str(entry.get("definition", ""))
        rows.append([label, format_score(entry.get("value")), f"{definition}; {note}" if note else definition])
    return rows


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


def summarize_config(config: Optional[Mapping[str, Any]], matrix: Optional[AccuracyMatrix] = None) -> dict[str, Any]:
    """The few settings a reader needs to interpret the numbers (model, methods, stream, scoring).

    With the run's ``matrix`` the scoring line names the metrics its tasks actually used.
    """
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
        "scoring": scoring_text(matrix, model.get("kind"), evaluation.get("scoring")),
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
        markdown_table(["metric", "value"], [row[:2] for row in metric_rows(metrics, union)]),
    ]
    return "Class-incremental scores (label space: union)", "\n".join(lines)


def general_row_labels(general: GeneralScores, matrix: Optional[AccuracyMatrix] = None) -> list[str]:
    """Labels of the general rows: row 0 before training, then the matrix's training rows."""
    if len(general.row_labels) == len(general.rows) and all(general.row_labels):
        return list(general.row_labels)
    training = matrix.training_row_labels if matrix is not None else []
    labels = ["before training", *training]
    if len(labels) < len(general.rows):
        labels += [f"after phase {j}" for j in range(len(labels), len(general.rows))]
    return labels[: len(general.rows)]


def general_report_section(general: GeneralScores, matrix: Optional[AccuracyMatrix] = None) -> tuple[str, str]:
    """The held-out general-ability sets, row by row (not only their delta), and their plot."""
    header = ["row", *(n if h else f"{n} (↓)" for n, h in zip(general.names, general.higher_is_better))]
    labels = general_row_labels(general, matrix)
    from retain.evaluation.metric_info import metric_info  # noqa: PLC0415

    metrics = ", ".join(f"{n}: {metric_info(m, h).display} ({metric_info(m, h).direction})"
                        for n, m, h in zip(general.names, general.metric_names, general.higher_is_better))
    body = [
        f"Held-out sets scored before training and after every phase ({metrics}). "
        "The general ability delta above is the mean change from the first row to the last.", "",
        markdown_table(header, [[label, *(format_score(v) for v in row)] for label, row in zip(labels, general.rows)]),
        "", f"![general-ability sets]({GENERAL_PLOT_FILE})",
    ]
    return "General ability (held-out sets)", "\n".join(body)


def render_markdown(
    matrix: AccuracyMatrix,
    metrics: Mapping[str, Any],
    config_summary: Mapping[str, Any],
    extra_sections: Sequence[tuple[str, str]] = (),
    warnings: Sequence[str] = (),
) -> str:
    """The report.md text: configuration, warnings, matrix, metrics with their definitions, plots."""
    name = config_summary.get("run")
    parts = [f"# retain run report{f': {name}' if name else ''}", "", "## Configuration", ""]
    parts += [f"- **{key}**: {_summary_value(value)}" for key, value in config_summary.items() if key != "run"]
    if len(parts) == 4:
        parts.append("- (no configuration found)")
    if warnings:
        parts += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]

    parts += ["", f"## {matrix_title(matrix)}", "",
              "Rows: the model after each training phase (row 0: before training); columns: tasks. "
              f"Scores: {scale_text(matrix)} (↓ marks a lower-is-better column); {MISSING} = not evaluated.", ""]
    header = ["row", *(_task_header(n, h) for n, h in zip(matrix.task_names, matrix.higher_is_better))]
    parts.append(markdown_table(header, [[label, *(format_score(v) for v in row)]
                                    for label, row in zip(matrix.row_labels, matrix.rows)]))

    parts += ["", "## Metrics", "",
              f"T = {matrix.tasks_trained} of {matrix.num_tasks} tasks trained. {MISSING} = undefined.", ""]
    parts.append(markdown_table(["metric", "value", "definition"], metric_rows(metrics, matrix)))
    ap_t = metrics.get("ap_t") or []
    if ap_t:
        parts += ["", "AP_t (running): " + ", ".join(format_score(v) for v in ap_t)]

    parts += ["", "## Plots", "", f"![{matrix_title(matrix)} heatmap]({HEATMAP_FILE})", "",
              f"![AP_t curve]({AP_CURVE_FILE})"]
    for title, body in extra_sections:
        parts += ["", f"## {title}", "", body.rstrip()]
    return "\n".join(parts) + "\n"


def format_matrix_text(matrix: AccuracyMatrix) -> str:
    """The matrix as an aligned plain-text table for the terminal."""
    header = ["row", *(_task_header(n, h) for n, h in zip(matrix.task_names, matrix.higher_is_better))]
    rows = [[label, *(format_score(v) for v in row)] for label, row in zip(matrix.row_labels, matrix.rows)]
    return text_table(header, rows)


def format_metrics_text(metrics: Mapping[str, Any], matrix: Optional[AccuracyMatrix] = None) -> str:
    """Metrics as aligned text lines: label, value (right-aligned), definition."""
    rows = metric_rows(metrics, matrix)
    text = text_table(["metric", "value", "definition"], rows, numeric={1})
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
    from retain.reporting.plots import plot_ap_curve, plot_general, plot_heatmap  # matplotlib only when needed
    from retain.reporting.scoring import scoring_section  # the metric registry only when needed

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
    sections = [scoring] if scoring is not None else []
    if union is not None:
        union_metrics = compute_cl_metrics(union)
        folder.write_metrics(union_metrics, variant="union")
        sections.append(union_report_section(union, union_metrics))
    if general is not None and general.rows:
        plot_general(general, folder.path / GENERAL_PLOT_FILE, general_row_labels(general, matrix))
        sections.append(general_report_section(general, matrix))
    plot_heatmap(matrix, folder.path / HEATMAP_FILE)
    plot_ap_curve(matrix, metrics, folder.path / AP_CURVE_FILE)
    summary = summarize_config(config, matrix)
    summary.setdefault("run", folder.path.name)
    evaluated = folder.read_evaluation()
    if evaluated is not None:  # a `retain eval` folder: the model as scored, and no methods
        adapter = evaluated.get("adapter")
        summary["model"] = f"{evaluated.get('model')}{f' + adapter {adapter}' if adapter else ''}"
        summary["methods"] = ["none: evaluated without training (retain eval)"]
    if extra_sections is None:
        extra_sections = folder.read_report_sections()
    else:
        folder.write_report_sections(extra_sections)
    warnings = [never_learned_text(*found) for found in never_learned(matrix)]
    write_text_atomic(
        folder.report_path, render_markdown(matrix, metrics, summary, [*sections, *extra_sections], warnings)
    )
    text = format_matrix_text(matrix) + "\n\n" + format_metrics_text(metrics, matrix)
    return text + "".join(f"\nwarning: {w}" for w in warnings)
