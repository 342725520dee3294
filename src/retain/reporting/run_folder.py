"""The run folder: one place, with fixed file names, for everything a run produces.

Layout (all files written atomically, so a crash never leaves half a file)::

    config.yaml          the resolved configuration
    matrix.json          the accuracy matrix (the source of truth) ...
    matrix.csv           ... and the same as a spreadsheet-friendly table
    metrics.json         CL metrics, each with its definition
    general.json         general-ability scores (optional)
    single_task.json     single-task fine-tuning scores per task, for FWT vs single-task (optional)
    evaluation.json      the model (and adapter) a ``retain eval`` folder scored (only there)
    report_sections.json extra report sections from methods, kept so ``retain report`` can redo them
    predictions/rowJJ_<task>.jsonl
    steps.jsonl, steps.csv  tracker records (retain.engine.trackers)
    models/task-NN/      exportable models (retain.exporting.task_model)
    run.log, report.md, heatmap.png, ap_curve.png, general.png (with general sets)
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from retain.errors import RetainError
from retain.evaluation.cl_metrics import AccuracyMatrix, GeneralScores, Score
from retain.reporting.atomic import write_json_atomic, write_text_atomic

CONFIG_FILE = "config.yaml"
MATRIX_JSON = "matrix.json"
MATRIX_CSV = "matrix.csv"
UNION_MATRIX_JSON = "matrix_union.json"
METRICS_FILE = "metrics.json"
GENERAL_FILE = "general.json"
SINGLE_TASK_FILE = "single_task.json"
EVALUATION_FILE = "evaluation.json"
REPORT_SECTIONS_FILE = "report_sections.json"
PREDICTIONS_DIR = "predictions"
LOG_FILE = "run.log"
REPORT_FILE = "report.md"
HEATMAP_FILE = "heatmap.png"
AP_CURVE_FILE = "ap_curve.png"
GENERAL_PLOT_FILE = "general.png"

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_file_part(name: str) -> str:
    """A task name made safe for a file name (task names may hold '/', spaces or any script).

    A name that had to be changed gets a short hash of the original, so that two names that
    sanitise alike ('日本' and '中文' both become 'task') never share one predictions file.
    """
    safe = _UNSAFE.sub("_", name).strip("._") or "task"
    if safe == name:
        return safe
    return f"{safe}-{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def _format_cell(value: Score) -> str:
    return "" if value is None else repr(float(value))


class RunFolder:
    """Reads and writes the files of one run folder; nothing is created until something is written."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- paths -----------------------------------------------------------------------------

    @property
    def log_path(self) -> Path:
        return self.path / LOG_FILE

    @property
    def matrix_path(self) -> Path:
        return self.path / MATRIX_JSON

    @property
    def report_path(self) -> Path:
        return self.path / REPORT_FILE

    @property
    def predictions_dir(self) -> Path:
        return self.path / PREDICTIONS_DIR

    def has_matrix(self) -> bool:
        return self.matrix_path.is_file()

    # -- writing ---------------------------------------------------------------------------

    def write_config(self, config: Mapping[str, Any]) -> Path:
        """Write the resolved configuration (key order kept, so it reads like the input)."""
        text = yaml.safe_dump(_plain(config), sort_keys=False, allow_unicode=True)
        return write_text_atomic(self.path / CONFIG_FILE, text)

    def write_matrix(self, matrix: AccuracyMatrix, variant: str = "") -> None:
        """Write matrix.json and matrix.csv (row label, then one column per task; blank = None).

        ``variant`` 'union' writes matrix_union.*: the class-incremental scores of the same models.
        """
        suffix = f"_{variant}" if variant else ""
        write_json_atomic(self.path / f"matrix{suffix}.json", matrix.to_dict())
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["row", *matrix.task_names])
        for label, row in zip(matrix.row_labels, matrix.rows):
            writer.writerow([label, *(_format_cell(v) for v in row)])
        write_text_atomic(self.path / f"matrix{suffix}.csv", buffer.getvalue())

    def write_metrics(self, metrics: Mapping[str, Any], variant: str = "") -> Path:
        return write_json_atomic(self.path / (f"metrics_{variant}.json" if variant else METRICS_FILE), dict(metrics))

    def write_general(self, general: GeneralScores) -> Path:
        return write_json_atomic(self.path / GENERAL_FILE, general.to_dict())

    def write_evaluation(self, evaluated: Mapping[str, Any]) -> Path:
        """Mark the folder as a ``retain eval`` folder: which model (and adapter) it scored."""
        return write_json_atomic(self.path / EVALUATION_FILE, dict(evaluated))

    def read_evaluation(self) -> Optional[dict[str, Any]]:
        """What a ``retain eval`` folder scored; None for a run folder."""
        path = self.path / EVALUATION_FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RetainError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise RetainError(f"{path}: expected a JSON object (model, adapter)")
        return data

    def write_single_task_scores(self, scores: Mapping[str, Score]) -> Path:
        """Single-task fine-tuning scores by task name (used for FWT vs single-task)."""
        return write_json_atomic(self.path / SINGLE_TASK_FILE, dict(scores))

    def write_method_files(self, payloads: Mapping[str, Any]) -> None:
        """JSON files a method's results fill (e.g. KIF's unit importances), rewritten atomically."""
        for name, payload in payloads.items():
            write_json_atomic(self.path / safe_file_part(name), payload)

    def write_report_sections(self, sections: Sequence[tuple[str, str]]) -> Path:
        return write_json_atomic(self.path / REPORT_SECTIONS_FILE, [[t, b] for t, b in sections])

    def write_predictions(self, row_label_index: int, task_name: str, records: Sequence[Mapping[str, Any]]) -> Path:
        """Write one JSON line per record to ``predictions/row{j:02d}_{task}.jsonl``."""
        lines = "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in records)
        path = self.predictions_dir / f"row{row_label_index:02d}_{safe_file_part(task_name)}.jsonl"
        return write_text_atomic(path, lines)

    # -- reading ---------------------------------------------------------------------------

    def _read_json(self, name: str) -> Optional[Any]:
        path = self.path / name
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RetainError(f"{path}: cannot read JSON ({err})") from err

    def _read_matrix_file(self, name: str) -> Optional[AccuracyMatrix]:
        data = self._read_json(name)
        if data is None:
            return None
        try:
            return AccuracyMatrix.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise RetainError(f"{self.path / name}: malformed accuracy matrix ({err!r})") from err

    def read_matrix(self) -> AccuracyMatrix:
        """The accuracy matrix; a RetainError names the folder when it is missing or malformed."""
        matrix = self._read_matrix_file(MATRIX_JSON)
        if matrix is None:
            raise RetainError(f"{self.path}: no {MATRIX_JSON} (not a run folder, or no row was completed)")
        return matrix

    def read_union_matrix(self) -> Optional[AccuracyMatrix]:
        """The class-incremental matrix of the same models (classifier runs within task labels)."""
        return self._read_matrix_file(UNION_MATRIX_JSON)

    def read_metrics(self) -> Optional[dict[str, Any]]:
        data = self._read_json(METRICS_FILE)
        if data is not None and not isinstance(data, dict):
            raise RetainError(f"{self.path / METRICS_FILE}: expected a JSON object")
        return data

    def read_config(self) -> Optional[dict[str, Any]]:
        path = self.path / CONFIG_FILE
        if not path.is_file():
            return None
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise RetainError(f"{path}: cannot read YAML ({err})") from err
        from retain.config import safe_load_yaml  # noqa: PLC0415  (the alias-capped loader)

        data = safe_load_yaml(text, str(path))
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise RetainError(f"{path}: expected a mapping at the top level")
        return data

    def read_general(self) -> Optional[GeneralScores]:
        data = self._read_json(GENERAL_FILE)
        if data is None:
            return None
        try:
            return GeneralScores.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise RetainError(f"{self.path / GENERAL_FILE}: malformed general scores ({err!r})") from err

    def read_report_sections(self) -> list[tuple[str, str]]:
        data = self._read_json(REPORT_SECTIONS_FILE)
        if data is None:
            return []
        try:
            return [(str(title), str(body)) for title, body in data]
        except (TypeError, ValueError) as err:
            raise RetainError(f"{self.path / REPORT_SECTIONS_FILE}: expected [title, text] pairs") from err

    def read_single_task_scores(self, task_names: Sequence[str]) -> Optional[list[Score]]:
        """Single-task scores aligned with ``task_names`` (missing tasks = None), or None if absent."""
        data = self._read_json(SINGLE_TASK_FILE)
        if data is None:
            return None
        path = self.path / SINGLE_TASK_FILE
        if not isinstance(data, dict):
            raise RetainError(f"{path}: expected an object mapping task name -> score")
        unknown = sorted(set(data) - set(task_names))
        if unknown:
            raise RetainError(f"{path}: unknown task names {unknown}; the stream has {list(task_names)}")
        try:
            return [None if data.get(name) is None else float(data[name]) for name in task_names]
        except (TypeError, ValueError) as err:
            raise RetainError(f"{path}: scores must be numbers ({err})") from err


def _no_write(*args: Any, **kwargs: Any) -> None:
    return None


class NoWrites:
    """Stands in for the run folder on processes other than the main one (only the main process
    writes): each ``write_*`` method of :class:`RunFolder` does nothing, and any other name (a
    read, a typo) raises AttributeError, as it would on the main process, instead of passing
    silently. The names come from RunFolder itself, so a new write method needs no edit here."""

    WRITES = frozenset(name for name in vars(RunFolder) if name.startswith("write_") and callable(vars(RunFolder)[name]))

    def __getattr__(self, name: str) -> Any:
        if name in NoWrites.WRITES:
            return _no_write
        raise AttributeError(
            f"{name!r}: not a write method of RunFolder (on a process other than the main one the run "
            f"folder takes only {', '.join(sorted(NoWrites.WRITES))})"
        )


def _plain(value: Any) -> Any:
    """Turn tuples, Paths and other mappings into YAML-safe builtins (safe_dump refuses them)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
