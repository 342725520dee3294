"""Reading another run's folder as the single-task reference of this one (FWT vs single-task)."""

from __future__ import annotations

from typing import Optional

from retain.config import parse_method_list
from retain.errors import ConfigError
from retain.methods.base import RESETS_MODEL
from retain.methods.registry import available_methods
from retain.reporting.run_folder import RunFolder


def read_single_task_reference(path: Optional[str], task_names: list[str]) -> Optional[dict[str, float]]:
    """Single-task scores s[i] = a[i][i] of a finished reference run, by task name (None: no reference).

    A reference run is one whose methods start every task from the initial weights (the
    ``resets_model`` capability, as ``single`` declares), so its diagonal holds single-task scores.
    """
    if path is None:
        return None
    key = "eval.single_task_reference"
    folder = RunFolder(path)
    config = folder.read_config()
    if config is None or not folder.has_matrix():
        raise ConfigError(f"{key}: {path} is not a run folder (no config.yaml or matrix.json)")
    methods = [spec.name for spec in parse_method_list(config.get("methods") or [])]
    registered = available_methods()
    resetting = sorted(n for n, cls in registered.items() if RESETS_MODEL in cls.capabilities)
    if not any(name in registered and RESETS_MODEL in registered[name].capabilities for name in methods):
        raise ConfigError(
            f"{key}: {path} is a run of {'+'.join(methods)}, not of {' or '.join(resetting)} "
            "(a run that starts every task from the initial weights)"
        )
    reference = folder.read_matrix()
    scores: dict[str, float] = {}
    for name in task_names:
        if name not in reference.task_names:
            raise ConfigError(f"{key}: {path} has no task {name!r} (its tasks: {', '.join(reference.task_names)})")
        index = reference.task_names.index(name)
        row = reference.row_after_task(index)
        if row is None or row[index] is None:
            raise ConfigError(f"{key}: {path} has not finished task {name!r}; complete that run first")
        scores[name] = float(row[index])
    return scores
