"""Side-by-side comparison of run folders (``retain compare``), seeds pooled.

Runs whose configurations differ only by ``seed`` (and their name and folder) are one row:
mean ± std (n) over them, as defined in :mod:`retain.reporting.aggregate`. Each row is labelled
by its methods with their non-default parameters, plus the config keys that differ between rows.
A run that has not trained every task is never pooled: it gets its own row, its values marked
with ``*`` (they cover only the tasks trained so far). Runs on different streams (benchmark,
order or tasks) are compared with a warning, since their numbers are not commensurable.

Metrics are recomputed from each run's matrix.json when it exists (so runs written by older
versions compare on today's definitions); metrics.json is the fallback. Nothing is written.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

from retain.errors import RetainError
from retain.reporting.aggregate import (
    FAMILY_TITLES,
    MISSING,
    RunScores,
    family_keys,
    format_spread,
    metric_title,
    read_run,
    spread,
    summarise_runs,
)
from retain.reporting.labels import canonical_methods, differing_keys, flatten_config, format_value, method_label
from retain.reporting.tables import markdown_table

#: config keys that never make two runs different experiments.
IDENTITY_KEYS = ("seed", "name", "output_dir")
UNFINISHED_MARK = "*"


def seed_group_key(config: Mapping[str, Any]) -> str:
    """The configuration without seed, name and folder (methods with their defaults spelled out)."""
    rest = {k: v for k, v in config.items() if k not in IDENTITY_KEYS}
    rest["methods"] = canonical_methods(config.get("methods"))
    return json.dumps(rest, sort_keys=True, default=str)


#: stream settings that change which examples a run sees (beyond benchmark, order and task list).
STREAM_CAPS = ("eval_split", "max_train_per_task", "max_eval_per_task", "max_source_length", "max_target_length",
               "demo_train_size", "demo_eval_size")


def _stream_of(run: RunScores, caps: Sequence[str] = ()) -> str:
    stream = run.config.get("stream") or {}
    parts = [str(stream.get("benchmark", MISSING))]
    if stream.get("order") is not None:
        parts.append(f"order {stream['order']}")
    parts.append("tasks " + (", ".join(run.task_names) or MISSING))
    parts += [f"{key}={format_value(stream.get(key))}" for key in caps]
    return "; ".join(parts)


def stream_warnings(runs: Sequence[RunScores]) -> list[str]:
    """One warning when the runs do not share a stream (benchmark, order, task list, caps)."""
    known = [run for run in runs if run.main is not None or run.config]
    caps = [key for key in STREAM_CAPS
            if len({json.dumps((r.config.get("stream") or {}).get(key), default=str) for r in known}) > 1]
    streams: dict[str, list[str]] = {}
    for run in known:
        streams.setdefault(_stream_of(run, caps), []).append(run.name)
    if len(streams) < 2:
        return []
    detail = " | ".join(f"{', '.join(names)}: {stream}" for stream, names in streams.items())
    return [f"warning: the runs are on different streams, their numbers are not commensurable ({detail})"]


def method_parameters(entries: Sequence[list[RunScores]], labels: Sequence[str]) -> list[str]:
    """'- label: replay(ratio=0.1, balanced=false, ...)' per row: every parameter, defaults included."""
    lines = []
    for label, entry in zip(labels, entries):
        if not entry[0].config:
            continue
        described = []
        for method in canonical_methods(entry[0].config.get("methods")):
            if not isinstance(method, Mapping):
                described.append(str(method))
                continue
            params = ", ".join(f"{k}={format_value(v)}" for k, v in method.items() if k != "name")
            described.append(f"{method.get('name')}({params})" if params else str(method.get("name")))
        line = f"- {label}: {' + '.join(described)}"
        if line not in lines:
            lines.append(line)
    return lines


def _grouped(runs: Sequence[RunScores]) -> tuple[list[list[RunScores]], list[str]]:
    """Finished runs grouped by configuration; unfinished ones alone. Repeated seeds count once."""
    groups: dict[str, list[RunScores]] = {}
    entries: list[list[RunScores]] = []
    warnings: list[str] = []
    for run in runs:
        if not run.finished:
            entries.append([run])
            continue
        key = seed_group_key(run.config)
        if key not in groups:
            groups[key] = []
            entries.append(groups[key])
        twin = next((other for other in groups[key] if other.seed == run.seed), None)
        if twin is not None:
            warnings.append(f"warning: {run.path} repeats {twin.path} (same config and seed {run.seed}); counted once")
            continue
        groups[key].append(run)
    return entries, warnings


def _labels(entries: Sequence[list[RunScores]]) -> list[str]:
    """Method label per row, plus the config keys that differ between the rows."""
    configs = [entry[0].config for entry in entries]
    varying = differing_keys([c for c in configs if c], ignore=(*IDENTITY_KEYS, "methods"))
    labels = []
    for config in configs:
        flat = flatten_config(config)
        extra = ", ".join(f"{k}={format_value(flat.get(k))}" for k in varying if k in flat)
        label = method_label(config.get("methods")) if config else MISSING
        labels.append(f"{label} [{extra}]" if extra else label)
    return labels


def _family_table(family: str, entries: Sequence[list[RunScores]], labels: Sequence[str]) -> str:
    keys = family_keys(family)
    header = ["methods", "runs", "seeds", *(metric_title(k) for k in keys), "tasks"]
    rows = []
    for label, entry in zip(labels, entries):
        finished = entry[0].finished
        summary = summarise_runs(entry)
        cells = [format_spread(summary.values.get(k, spread([]))) for k in keys]
        if not finished:
            cells = [c if c == MISSING else c + UNFINISHED_MARK for c in cells]
        names = ", ".join(r.name for r in entry)
        seeds = ", ".join(MISSING if r.seed is None else str(r.seed) for r in entry)
        rows.append([label, names if finished else f"{names} (unfinished)", seeds, *cells, entry[0].tasks_done])
    return markdown_table(header, rows)


def compare_runs(run_dirs: Sequence[Union[str, Path]]) -> str:
    """Markdown: one row per configuration (seeds pooled as mean ± std (n)), warnings first.

    A table per score family found (the main matrix, then e.g. the union label space).
    """
    if not run_dirs:
        raise RetainError("compare: name at least one run folder")
    runs = [read_run(Path(d)) for d in run_dirs]
    entries, notes = _grouped(runs)
    notes = stream_warnings(runs) + notes
    labels = _labels(entries)
    families: list[str] = []
    for run in runs:
        families += [f for f in run.families() if f not in families]
    parts = [*notes]
    if notes:
        parts.append("")
    for family in families:
        if len(families) > 1:
            parts += [f"### {FAMILY_TITLES.get(family, family)}", ""]
        parts += [_family_table(family, entries, labels), ""]
    parts.append("mean ± std (n) over seeds (sample std; — when n = 1); LA = mean of the diagonal a[i][i].")
    parameters = method_parameters(entries, labels)
    if parameters:
        parts += ["", "Methods with every parameter (defaults included):", *parameters]
    if any(not entry[0].finished for entry in entries):
        parts.append(
            f"{UNFINISHED_MARK} unfinished run: values over the tasks trained so far (see 'tasks'), "
            "not pooled with finished runs."
        )
    return "\n".join(parts) + "\n"
