"""Experiment trackers for ``train.report_to``, through Accelerate's tracker interface.

``jsonl`` and ``csv`` are small :class:`accelerate.tracking.GeneralTracker` subclasses that write
``steps.jsonl`` / ``steps.csv`` in the run folder and need nothing installed; ``tensorboard`` and
``wandb`` are Accelerate's own trackers (their packages are optional extras). All of them are
built here as instances, so each knows where the run folder is and, on resume, from which step
it continues: records past the checkpoint's step (written after it, before the crash) are
dropped from the files, and TensorBoard purges them (``purge_step``), so no step appears twice.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
from pathlib import Path
from typing import IO, Any, Optional

from accelerate.tracking import GeneralTracker

from retain.errors import ConfigError
from retain.reporting.atomic import write_text_atomic

STEPS_JSONL = "steps.jsonl"
STEPS_CSV = "steps.csv"
TENSORBOARD_DIR = "tensorboard"
#: the package each optional tracker needs, and the extra that installs it
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def _plain_number(value: Any) -> Any:
    """A JSON-safe value: non-finite floats as strings (JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value


class _LineFileTracker(GeneralTracker):
    """A tracker appending one text record per ``log`` call to a file in the run folder."""

    requires_logging_directory = False
    header: Optional[str] = None

    def __init__(self, path: Path, resume_step: Optional[int] = None) -> None:
        super().__init__()
        self.path = path
        self.resume_step = resume_step
        self.handle: Optional[IO[str]] = None

    @property
    def tracker(self) -> Any:
        return self.handle

    def _step_of(self, line: str) -> Optional[int]:
        raise NotImplementedError

    def start(self) -> None:
        if self.resume_step is not None and self.path.is_file():
            self._drop_after(self.resume_step)
        elif self.path.exists():  # a new run in a cleared folder never appends to old records
            self.path.unlink()
        new = not self.path.is_file()
        self.handle = open(self.path, "a", encoding="utf-8", newline="")
        if new and self.header:
            self.handle.write(self.header)
            self.handle.flush()

    def _drop_after(self, step: int) -> None:
        """Keep the records up to ``step`` (the checkpoint's): the rest is redone by the resume.

        A line cut short by a crash does not parse and goes too.
        """
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.endswith("\n"):
                continue
            if self.header and line == self.header:
                kept.append(line)
                continue
            line_step = self._step_of(line)
            if line_step is not None and line_step <= step:
                kept.append(line)
        write_text_atomic(self.path, "".join(kept))

    def _write(self, text: str) -> None:
        if self.handle is None:
            return
        self.handle.write(text)
        self.handle.flush()  # a record is on disk before the next step: the crash test reads it

    def finish(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


class JsonlTracker(_LineFileTracker):
    """``steps.jsonl``: one JSON object per record, ``{"step": N, key: value, ...}``."""

    name = "jsonl"

    def _step_of(self, line: str) -> Optional[int]:
        try:
            step = json.loads(line).get("step")
        except (ValueError, AttributeError):
            return None
        return step if isinstance(step, int) else None

    def log(self, values: dict, step: Optional[int] = None, **kwargs: Any) -> None:
        record = {"step": step, **{k: _plain_number(v) for k, v in values.items()}}
        self._write(json.dumps(record, ensure_ascii=False) + "\n")


class CsvTracker(_LineFileTracker):
    """``steps.csv`` in long form (``step,key,value``): methods add keys as a run goes on."""

    name = "csv"
    header = "step,key,value\n"

    def _step_of(self, line: str) -> Optional[int]:
        try:
            return int(next(csv.reader([line]))[0])
        except (ValueError, IndexError, StopIteration):
            return None

    def log(self, values: dict, step: Optional[int] = None, **kwargs: Any) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        for key, value in values.items():
            writer.writerow([step, key, value])
        self._write(buffer.getvalue())


def check_trackers_available(report_to: list[str]) -> None:
    """An optional tracker whose package is missing is a setup error, not a silent no-op."""
    for name in report_to:
        package = _PACKAGES.get(name)
        if package is not None and importlib.util.find_spec(package) is None:
            raise ConfigError(
                f"train.report_to: {name} needs the {package} package, which is not installed "
                f"(pip install 'retain[{name}]' or pip install {package}); or remove it from the list"
            )


def build_trackers(report_to: list[str], run_dir: Path, run_name: str) -> list[GeneralTracker]:
    """Tracker instances for ``report_to`` (not started: :func:`start_trackers` does that)."""
    check_trackers_available(report_to)
    trackers: list[GeneralTracker] = []
    for name in report_to:
        if name == "jsonl":
            trackers.append(JsonlTracker(run_dir / STEPS_JSONL))
        elif name == "csv":
            trackers.append(CsvTracker(run_dir / STEPS_CSV))
        elif name == "tensorboard":
            from accelerate.tracking import TensorBoardTracker

            trackers.append(TensorBoardTracker(TENSORBOARD_DIR, str(run_dir)))
        elif name == "wandb":
            from accelerate.tracking import WandBTracker

            trackers.append(WandBTracker("retain", name=run_name, dir=str(run_dir)))
    return trackers


def set_resume_step(trackers: list[GeneralTracker], step: int) -> None:
    """Tell the trackers that the run continues after ``step`` (before they start)."""
    for tracker in trackers:
        if isinstance(tracker, _LineFileTracker):
            tracker.resume_step = step
        elif getattr(tracker, "name", "") == "tensorboard":
            tracker.init_kwargs["purge_step"] = step + 1


def flat_config(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The run config as dotted keys of plain values (trackers store hyperparameters flat)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flat_config(value, f"{prefix}{key}."))
        elif isinstance(value, (bool, int, float, str)) or value is None:
            flat[f"{prefix}{key}"] = value
        else:
            flat[f"{prefix}{key}"] = json.dumps(value, default=str)
    return flat
