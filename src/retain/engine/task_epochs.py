"""How many epochs each task trains for: ``train.epochs``, or one value per task.

Published experiments do not always train every task equally long (SEEKR's TRACE scripts train
some tasks 10 epochs, the others 5), so a rerun of them needs a value per task. The values are
checked once the stream is built (their count must match its tasks) and before any model is
loaded, so a wrong list fails in a fraction of a second.
"""

from __future__ import annotations

from typing import Sequence

from retain.config import TrainConfig
from retain.data.types import Stream
from retain.errors import ConfigError

PUBLISHED = "published"


def resolve_task_epochs(train: TrainConfig, stream: Stream) -> list[float]:
    """The epochs of each task of ``stream``, in stream order (refusing a list that does not fit)."""
    wanted = train.task_epochs
    if wanted is None:
        return [float(train.epochs)] * len(stream.tasks)
    if isinstance(wanted, str):
        if wanted != PUBLISHED:
            raise ConfigError(f"train.task_epochs: {wanted!r} is not a list of epochs or 'published'")
        missing = [task.name for task in stream.tasks if task.published_epochs is None]
        if missing:
            raise ConfigError(
                f"train.task_epochs: 'published': stream {stream.name} has no published epochs for "
                f"{', '.join(missing)} (trace and SEEKR's superni orders 9-10 publish them); give a list instead"
            )
        return [float(task.published_epochs) for task in stream.tasks]  # type: ignore[arg-type]
    if len(wanted) != len(stream.tasks):
        raise ConfigError(
            f"train.task_epochs: {len(wanted)} values for the {len(stream.tasks)} tasks of {stream.name} "
            f"(one per task, in stream order: {', '.join(stream.task_names)})"
        )
    for i, value in enumerate(wanted):
        if not value > 0:
            raise ConfigError(f"train.task_epochs[{i}]: {value} must be > 0 (epochs of task {stream.tasks[i].name})")
    return [float(value) for value in wanted]


def phase_epochs(epochs: Sequence[float], task_indices: Sequence[int], phase_name: str) -> float:
    """The epochs of a phase: its task's; a phase over several tasks (multi-task training) needs
    them equal, as its tasks are shuffled together into one set of passes."""
    values = {epochs[i] for i in task_indices}
    if len(values) > 1:
        raise ConfigError(
            f"train.task_epochs: phase {phase_name!r} trains {len(task_indices)} tasks together, which "
            f"cannot take different epochs ({', '.join(f'{v:g}' for v in sorted(values))}); give one value"
        )
    return values.pop()


__all__ = ["PUBLISHED", "phase_epochs", "resolve_task_epochs"]
