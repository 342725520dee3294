"""``retain sweep``: a grid of runs (methods x orders x seeds x settings) and its seed table.

The grid runs one run after another in this process, resumably (see :mod:`.execute`), then the
finished runs are pooled into mean ± std (n) per method and metric, per order and over orders
(see :mod:`.summary` and :mod:`retain.reporting.aggregate`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from retain.errors import ConfigError
from retain.reporting.atomic import write_text_atomic
from retain.reporting.guard import RunLock
from retain.reporting.tables import markdown_table
from retain.sweeps.execute import SweepRunError, execute_runs, sweep_logger
from retain.sweeps.plan import PlannedRun, plan_runs, run_state
from retain.sweeps.spec import SweepSpec, load_spec
from retain.sweeps.summary import SweepSummary, summarise_sweep, write_summary

SPEC_COPY = "sweep.yaml"

__all__ = ["SweepResult", "SweepRunError", "SweepSpec", "load_spec", "plan_runs", "run_sweep"]


@dataclass
class SweepResult:
    folder: Path
    runs: list[PlannedRun]
    outcome: dict[str, str]  # run name -> reused | ran | resumed (dry run: new | finished | partial ...)
    summary: Optional[SweepSummary]
    text: str  # the printed table (dry run: the plan)


def plan_text(runs: list[PlannedRun]) -> tuple[str, dict[str, str]]:
    """The dry-run table: every run with its folder and what a real invocation would do."""
    states = {run.name: run_state(run) for run in runs}
    rows = [[run.name, run.describe(), f"{states[run.name][0]}" + (f" ({states[run.name][1]})" if states[run.name][1] else "")]
            for run in runs]
    return markdown_table(["run folder", "what", "state"], rows), {name: state for name, (state, _) in states.items()}


def run_sweep(
    source: Union[str, Path, dict[str, Any], SweepSpec],
    dry_run: bool = False,
    quiet: bool = False,
    verbose_runs: bool = False,
) -> SweepResult:
    """Run (or, with ``dry_run``, only plan) a sweep; then write and return its summary.

    ``source``: a sweep YAML path, a mapping or a SweepSpec. Progress lines go to stderr (unless
    ``quiet``) and to ``<sweep folder>/sweep.log``; the runs' own logs go to their run.log (and to
    stderr with ``verbose_runs``). The sweep folder is locked for the sweep's whole life (the run
    folders' ``flock``, :class:`retain.reporting.guard.RunLock`): a second sweep of the same folder
    stops at once with the holder's pid, having written nothing.
    """
    spec = load_spec(source)
    runs = plan_runs(spec)
    if dry_run:
        text, states = plan_text(runs)
        return SweepResult(spec.folder, runs, states, None, f"sweep {spec.folder}: {len(runs)} runs\n\n{text}\n")
    folder = spec.folder
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder}: the sweep folder exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    # One sweep per folder at a time: a second one stops here, before it writes anything (the
    # OS drops the lock when the holder dies, even by kill -9, so there is never a stale lock).
    with RunLock(folder):
        write_text_atomic(folder / SPEC_COPY, yaml.safe_dump(spec.to_dict(), sort_keys=False, allow_unicode=True))
        logger = sweep_logger(folder, quiet)
        outcome = execute_runs(runs, folder, logger, quiet_runs=not verbose_runs)
        summary = summarise_sweep(spec, runs)
        text = write_summary(summary, folder)
        logger.info("sweep %s: summary in %s", folder, folder / "summary.md")
    return SweepResult(folder, runs, outcome, summary, text)
