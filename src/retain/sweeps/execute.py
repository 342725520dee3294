"""Running a sweep's grid: one run after another in this process, resumably.

Runs go through :func:`retain.engine.runner.run` in the same interpreter (no start-up and import
per run). Finished runs are reused, partial ones resumed by the engine, and each run's wall time is
kept in the sweep folder (durations.json), so the ETA of a restarted sweep uses earlier runs too.
A run that fails stops the sweep with one message naming it; its traceback, if it was not a user
error, goes to a file beside the runs. Finished runs stay, and the next invocation continues.
"""

from __future__ import annotations

import gc
import json
import logging
import statistics
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

from retain.errors import RetainError
from retain.log import make_logger
from retain.reporting.atomic import write_json_atomic
from retain.sweeps.plan import FINISHED, NEW, PlannedRun, run_state

LOG_FILE = "sweep.log"
DURATIONS_FILE = "durations.json"


class SweepRunError(RetainError):
    """A run of the sweep failed; the message names it (finished runs are kept).

    ``exit_status`` is 2 when the run failed on a user error (config, data), 1 on a crash.
    """

    def __init__(self, message: str, exit_status: int = 2) -> None:
        super().__init__(message)
        self.exit_status = exit_status


def sweep_logger(folder: Optional[Path], quiet: bool) -> logging.Logger:
    """Progress lines to ``folder/sweep.log`` (None: no file) and, unless quiet, stderr."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    name = f"retain.sweep.{folder.resolve() if folder else id(quiet)}"
    return make_logger(name, folder / LOG_FILE if folder is not None else None, quiet, "%(asctime)s %(message)s")


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta_text(durations: Sequence[float], runs_left: int) -> str:
    """'ETA 3m10s (mean 38s over 5 runs)' from the durations of runs finished so far."""
    if runs_left <= 0:
        return "nothing left"
    if not durations:
        return "ETA unknown until a run finishes"
    mean = statistics.fmean(durations)
    return f"ETA {format_seconds(mean * runs_left)} for {runs_left} run(s) (mean {format_seconds(mean)} over {len(durations)})"


def _read_durations(folder: Path) -> dict[str, float]:
    path = folder / DURATIONS_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        return {}  # only feeds the ETA; a damaged file is rebuilt
    return {str(k): float(v) for k, v in data.items() if isinstance(v, (int, float))} if isinstance(data, dict) else {}


def _release_memory() -> None:
    """Runs share the process: drop the finished run's model before the next one is built."""
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def _run_one(run: PlannedRun, state: str, quiet: bool) -> Any:
    from retain.engine.runner import run as run_experiment  # noqa: PLC0415

    if state == NEW:
        return run_experiment(run.config, quiet=quiet, overwrite=run.run_dir.exists())
    # The sweep file is the user's own: the import-path metrics its runs name may be imported
    # on resume (a run folder alone never gets that trust).
    from retain.evaluation.metrics.registry import import_paths_in  # noqa: PLC0415

    return run_experiment(run.run_dir, resume=True, quiet=quiet, allow_imports=import_paths_in(run.config))


def execute_runs(
    runs: Sequence[PlannedRun],
    folder: Path,
    logger: logging.Logger,
    quiet_runs: bool = True,
    runner: Optional[Callable[[PlannedRun, str, bool], Any]] = None,
) -> dict[str, str]:
    """Run every planned run that is not finished; returns run name -> 'reused' | 'ran' | 'resumed'."""
    runner = runner or _run_one
    states = {run.name: run_state(run) for run in runs}  # a foreign folder stops us before any work
    durations = _read_durations(folder)
    to_do = [run for run in runs if states[run.name][0] != FINISHED]
    logger.info(
        "sweep %s: %d runs, %d finished earlier, %d to run", folder, len(runs), len(runs) - len(to_do), len(to_do)
    )
    outcome: dict[str, str] = {}
    done = 0
    for index, run in enumerate(runs, start=1):
        state, detail = states[run.name]
        prefix = f"[{index}/{len(runs)}] {run.name}"
        if state == FINISHED:
            logger.info("%s: finished earlier (%s), reused", prefix, detail)
            outcome[run.name] = "reused"
            continue
        known = [durations[r.name] for r in runs if r.name in durations]
        action = "resuming" if state != NEW else "running"
        logger.info("%s: %s (%s%s); %s", prefix, action, run.describe(), f"; {detail}" if detail else "",
                    eta_text(known, len(to_do) - done))
        started = time.perf_counter()
        try:
            result = runner(run, state, quiet_runs)
        except RetainError as err:
            logger.info("%s: failed: %s", prefix, err)
            raise SweepRunError(f"sweep run {run.name} ({run.describe()}) failed: {err}") from None
        except Exception as err:  # noqa: BLE001  (a bug or a crash: keep the traceback in a file)
            trace = folder / f"{run.name}.traceback.txt"
            trace.write_text(traceback.format_exc(), encoding="utf-8")
            logger.info("%s: failed: %s: %s (traceback in %s)", prefix, type(err).__name__, err, trace)
            raise SweepRunError(
                f"sweep run {run.name} ({run.describe()}) failed: {type(err).__name__}: {err} "
                f"(traceback in {trace}); finished runs are kept, run the sweep again to continue",
                exit_status=1,
            ) from None
        finally:
            _release_memory()
        seconds = time.perf_counter() - started
        done += 1
        durations[run.name] = seconds
        write_json_atomic(folder / DURATIONS_FILE, durations)
        ap = (getattr(result, "metrics", None) or {}).get("ap", {}).get("value")
        logger.info("%s: done in %s%s; %s", prefix, format_seconds(seconds),
                    f", AP {ap:.2f}" if isinstance(ap, (int, float)) else "",
                    eta_text(list(durations[r.name] for r in runs if r.name in durations), len(to_do) - done))
        outcome[run.name] = "resumed" if state != NEW else "ran"
    return outcome
