"""Everything a run can check without a model, done before torch is imported.

A typo in a config should be reported in a second, not after the half-minute it takes to import
torch and transformers; so the config, the data files, the run folder (exists? replaceable?
locked?) and, on resume, the overrides are all checked here, by a module that imports neither.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterable
from typing import Any, Optional

from retain.config import RunConfig, load_config_dict, make_config
from retain.data.benchmarks import build_stream
from retain.engine.task_epochs import resolve_task_epochs
from retain.data.types import Stream
from retain.errors import ConfigError, RetainError
from retain.evaluation.metrics.registry import importing_only
from retain.import_paths import is_import_path
from retain.methods.names import check_method_names
from retain.reporting.guard import check_links, check_replaceable, probe_lock, recover_replaced
from retain.reporting.run_folder import CONFIG_FILE, EVALUATION_FILE

# Keys that may change on --resume: they change how fast or what is kept, never a score.
RESUME_SAFE_KEYS = (
    "eval.batch_size", "eval.save_predictions", "train.report_to", "train.logging_steps", "output.keep_task_models", "output.progress",
)
# Keys that follow the folder being resumed, whatever the config says.
_FOLDER_KEYS = ("name", "output_dir")


@dataclass
class Prepared:
    """A checked run, ready for the engine: its config, its stream and, on resume, what changed."""

    config: RunConfig
    stream: Stream
    resume: bool = False
    overwrite: bool = False
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.config.run_dir


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def resume_changes(saved: dict[str, Any], wanted: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The keys ``wanted`` changes relative to the ``saved`` config of the run being resumed.

    Changes to anything that shapes the results (stream, model, training, methods ...) would give
    a matrix no single configuration produced, so they are refused, naming every such key.
    """
    old, new = _flatten(saved), _flatten(wanted)
    changed = {
        key: (old.get(key), new.get(key))
        for key in sorted(set(old) | set(new))
        if key not in _FOLDER_KEYS and old.get(key) != new.get(key)
    }
    refused = [key for key in changed if key not in RESUME_SAFE_KEYS]
    if refused:
        shown = ", ".join(f"{k} ({changed[k][0]!r} -> {changed[k][1]!r})" for k in refused)
        raise ConfigError(
            f"--resume: cannot change {shown}: a resumed run keeps the settings it started with "
            f"(only {', '.join(RESUME_SAFE_KEYS)} may change); start a new run with another name instead"
        )
    return changed


def _recover(run_dir: Path) -> None:
    """Put back a run that a killed ``--overwrite`` set aside (:func:`recover_replaced`)."""
    recovered = recover_replaced(run_dir) if run_dir.is_dir() and not run_dir.is_symlink() else None
    if recovered:
        print(f"note: {recovered}", file=sys.stderr)


def read_saved_config(run_dir: Path, overrides: Optional[list[str]] = None) -> RunConfig:
    """The config a run folder was started with (plus ``overrides``), named after the folder."""
    _recover(run_dir)
    path = run_dir / CONFIG_FILE
    if not run_dir.is_dir():
        raise RetainError(f"{run_dir}: no such run folder")
    if not path.is_file():
        raise RetainError(f"{run_dir}: nothing to resume (no {CONFIG_FILE}; not a run folder, or its start-up never finished)")
    data = load_config_dict(path)
    # The folder exists and is only continued, never created or removed: its name needs no check
    # (an older retain accepted names that the rules for new runs now refuse).
    data["name"] = "resumed"
    config = make_config(data, overrides)
    config.output_dir = str(run_dir.parent)
    config.name = run_dir.name
    return config


def check_run_folder(config: RunConfig, resume: bool, overwrite: bool, probe: bool = True) -> None:
    """The run folder can be used as asked: free, resumable, or replaceable; and (``probe``) not locked.

    A run that a killed ``--overwrite`` had set aside is put back first, so every check below
    (and a resume) sees the folder as it was before that overwrite.
    """
    run_dir = config.run_dir
    check_links(run_dir, Path(config.output_dir), resume)
    _recover(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise RetainError(f"{run_dir}: exists and is not a folder")
    if resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise RetainError(f"{run_dir}: nothing to resume (no {CONFIG_FILE}; not a run folder, or its start-up never finished)")
        if (run_dir / EVALUATION_FILE).is_file():
            raise RetainError(f"{run_dir}: a `retain eval` folder (one row, no training): nothing to resume; score again with retain eval --overwrite")
        if probe:
            probe_lock(run_dir)
        return
    occupied = run_dir.is_dir() and any(run_dir.iterdir())
    if occupied and not overwrite:
        raise RetainError(
            f"{run_dir}: run folder exists; continue it with --resume, "
            "replace it with --overwrite, or choose another name"
        )
    if occupied:
        check_replaceable(run_dir, Path(config.output_dir))
        if probe:
            probe_lock(run_dir)


def prepare(
    source: Any = None,
    overrides: Optional[list[str]] = None,
    resume: bool = False,
    overwrite: bool = False,
    allow_imports: Iterable[str] = (),
) -> Prepared:
    """Check a run before anything heavy: config, overrides on resume, run folder, data.

    A run folder's config may come from someone else: on resume, an import-path metric or method it
    names is imported only when it is in ``allow_imports`` (the CLI's ``--allow-import``).
    """
    if resume and overwrite:
        raise RetainError("--resume and --overwrite exclude each other")
    changes: dict[str, tuple[Any, Any]] = {}
    if resume and isinstance(source, (str, Path)) and not Path(source).is_file():
        run_dir = Path(source)
        # import-path methods are imported by the name check, metrics when the stream is built:
        # the whole check is inside the gate
        with importing_only(allow_imports, f"the run folder's {run_dir / CONFIG_FILE}"):
            saved = read_saved_config(run_dir)
            config = read_saved_config(run_dir, overrides) if overrides else saved
            changes = resume_changes(saved.to_dict(), config.to_dict())
            return _check(config, resume, overwrite, changes)
    return _check(make_config(source, overrides), resume, overwrite, changes)


def check_method_imports(specs: Iterable[Any]) -> None:
    """Import the methods named by import path (torch with them), under the run folder's gate
    when the config comes from one (:mod:`retain.import_paths`), so a wrong path or a module that
    fails to import stops the run before any model is loaded."""
    for index, spec in enumerate(specs):
        if is_import_path(spec.name):
            from retain.methods.registry import method_class  # noqa: PLC0415  (imports torch)

            method_class(spec.name, f"methods[{index}]")


def _check(config: RunConfig, resume: bool, overwrite: bool, changes: dict[str, tuple[Any, Any]]) -> Prepared:
    """The checks every run gets: method names, run folder, data (its metrics included)."""
    check_method_names(config.method_specs())
    check_method_imports(config.method_specs())
    check_run_folder(config, resume, overwrite)
    stream = build_stream(config.stream, config.seed)
    resolve_task_epochs(config.train, stream)
    return Prepared(config, stream, resume, overwrite, changes)
