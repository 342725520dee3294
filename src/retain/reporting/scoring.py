"""Which metric scores each task, in words: the run header's lines and the report's section.

A matrix column is only readable with its metric (a ROUGE-L of 40 is not an accuracy of 40, a
perplexity falls as the model learns), so both places name it, with its direction.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

from retain.errors import ConfigError
from retain.evaluation.metrics import get_metric
from retain.reporting.tables import markdown_table


def _describe(spec: str) -> tuple[str, str, str]:
    """(display name, direction, definition); an import path that no longer imports is named as is."""
    if spec.startswith("lm-eval/"):  # a general set scored by lm-evaluation-harness
        return (f"lm-eval {spec.split('/', 1)[1]}", "", "lm-evaluation-harness's own metric (\"metric,filter\"), "
                "x100 unless perplexity-like; the full results per row: general/lm_eval_row<k>.json")
    try:
        metric = get_metric(spec)
    except ConfigError:
        return spec, "", "(cannot be imported here)"
    direction = "higher is better" if metric.higher_is_better else "lower is better"
    return metric.display_name or spec, direction, metric.definition


def scoring_lines(stream: Any) -> list[str]:
    """One line per task and general set: ``task agnews: Accuracy (accuracy, higher is better): why``,
    followed by ``; answers post-processed by <name>`` for a task whose answers are post-processed."""
    lines = []
    for kind, tasks in (("task", stream.tasks), ("general set", stream.general)):
        for task in tasks:
            display, direction, _ = _describe(task.metric)
            why = f": {task.metric_reason}" if getattr(task, "metric_reason", "") else ""
            processing = getattr(task, "answer_processing", "")
            after = f"; answers post-processed by {processing}" if processing else ""
            lines.append(f"{kind} {task.name}: {display} ({task.metric}, {direction}){why}{after}")
    return lines


def scoring_rows(names: Sequence[str], metrics: Sequence[str], kind: str) -> list[list[str]]:
    rows = []
    for name, spec in zip(names, metrics):
        display, direction, definition = _describe(spec)
        rows.append([name, kind, display, direction, definition])
    return rows


def scoring_section(matrix: Any, general: Optional[Any] = None) -> Optional[tuple[str, str]]:
    """The report's "Scoring" section (None for run folders written before metrics were recorded)."""
    rows = scoring_rows(matrix.task_names, matrix.task_metrics, "task") if matrix.task_metrics else []
    if general is not None and getattr(general, "metrics", None):
        rows += scoring_rows(general.names, general.metrics, "general set")
    if not rows:
        return None
    header = ["task", "kind", "metric", "direction", "definition"]
    rules = list(getattr(matrix, "task_answer_processing", []) or [])
    if any(rules):  # a column only where some task's answers were post-processed before scoring
        header.append("answer post-processing")
        rules += [""] * (len(rows) - len(rules))  # general sets have none
        rows = [row + [rule or "—"] for row, rule in zip(rows, rules)]
    return "Scoring", markdown_table(header, rows)


__all__ = ["scoring_lines", "scoring_rows", "scoring_section"]
