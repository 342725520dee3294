"""Side-by-side comparison of run folders (``retain compare``): one markdown row per run.

Metrics are recomputed from each run's matrix.json when it exists (so runs written by older
versions compare on today's definitions); metrics.json is the fallback. Nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

from retain.errors import RetainError
from retain.evaluation.cl_metrics import compute_cl_metrics, metric_label, metric_value
from retain.reporting.report import MISSING, markdown_table, format_score
from retain.reporting.run_folder import RunFolder

#: metric keys shown as columns, in order.
COMPARED_METRICS = ("ap", "bwt", "fwt", "forgetting")


def _method_names(config: Optional[Mapping[str, Any]]) -> str:
    entries = (config or {}).get("methods") or []
    if isinstance(entries, (str, Mapping)):
        entries = [entries]
    names = [str(e.get("name")) if isinstance(e, Mapping) else str(e) for e in entries]
    return " + ".join(names) or MISSING


def _run_row(run_dir: Path) -> list[str]:
    folder = RunFolder(run_dir)
    if not folder.path.is_dir():
        raise RetainError(f"{folder.path}: no such run folder")
    config = folder.read_config()
    name = str((config or {}).get("name") or folder.path.name)
    metrics: Optional[Mapping[str, Any]] = None
    completed = MISSING
    if folder.has_matrix():
        matrix = folder.read_matrix()
        try:
            metrics = compute_cl_metrics(
                matrix,
                single_task_scores=folder.read_single_task_scores(matrix.task_names),
                general=folder.read_general(),
            )
        except ValueError as err:
            raise RetainError(f"{folder.path}: inconsistent run files ({err})") from err
        completed = f"{len(matrix.training_rows)} (tasks {matrix.tasks_trained}/{matrix.num_tasks})"
    else:
        metrics = folder.read_metrics()
    values = [format_score(metric_value(metrics or {}, key)) for key in COMPARED_METRICS]
    return [name, _method_names(config), *values, completed]


def compare_runs(run_dirs: Sequence[Union[str, Path]]) -> str:
    """A markdown table, one row per run: name, methods, AP, BWT (GEM), FWT, Forgetting, rows done."""
    if not run_dirs:
        raise RetainError("compare: name at least one run folder")
    header = ["run", "methods", *(metric_label(k) for k in COMPARED_METRICS), "rows completed"]
    return markdown_table(header, [_run_row(Path(d)) for d in run_dirs]) + "\n"
