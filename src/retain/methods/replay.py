"""Experience replay: a buffer of earlier tasks' training examples mixed into the new task.

The buffer holds, per finished task, the indices of the sampled training examples (the stream is
rebuilt identically from the config and seed, so indices are enough to resume). Two schedules:

- ``mixed``: buffer examples are shuffled together with the new task's data;
- ``interleaved``: separate replay micro-batches (``source == 'replay'``, each with its own
  backward), about one pass over the buffer per epoch, spread evenly over the task: after new
  batch ``i`` of ``N`` come ``floor(i R / N) - floor((i - 1) R / N)`` of the ``R`` replay batches,
  so exactly ``R`` are emitted even when ``R > N``. Subclasses that treat replay batches
  differently (distillation) use this one and look at ``batch.source``.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from retain.data.collate import EncodedExample, MicroBatch
from retain.config import option
from retain.errors import ConfigError
from retain.methods.base import Method
from retain.methods.registry import register_method

if TYPE_CHECKING:
    from retain.data.types import Task
    from retain.engine.context import RunContext


@dataclass
class ReplayParams:
    ratio: float = option("Fraction of each finished task's training set kept (e.g. 0.01, 0.02, 0.1).", 0.02)
    count: Optional[int] = option("A fixed number of examples per task instead of ratio.", None)
    balanced: bool = option("Sample the same number of examples per label (label-set tasks).", False)
    schedule: str = option("mixed (shuffled with the new data) | interleaved (separate replay micro-batches).", "mixed")
    batch_size: Optional[int] = option("Replay micro-batch size (interleaved); null = train.batch_size.", None)


def sample_buffer(task: "Task", size: int, balanced: bool, seed: str) -> list[int]:
    """Indices of ``size`` training examples of ``task``, drawn with ``seed``.

    Balanced sampling deals labels round-robin (in label-set order) and draws without replacement
    inside each label, so counts per label differ by at most one when every label has enough data.
    """
    rng = random.Random(seed)
    size = min(size, len(task.train))
    if not balanced or not task.labels:
        return sorted(rng.sample(range(len(task.train)), size))
    by_label: dict[str, list[int]] = defaultdict(list)
    for index, example in enumerate(task.train):
        by_label[example.target].append(index)
    pools = {label: rng.sample(by_label[label], len(by_label[label])) for label in task.labels if by_label[label]}
    chosen: list[int] = []
    while len(chosen) < size and any(pools.values()):
        for label in list(pools):
            if pools[label] and len(chosen) < size:
                chosen.append(pools[label].pop())
    return sorted(chosen)


def interleave_count(position: int, total_new: int, total_replay: int) -> int:
    """Replay batches to emit right after new batch ``position`` (1-based) of ``total_new``.

    The running total ``floor(position * R / N)`` reaches ``R`` at the last new batch, so the
    ``R`` replay batches are spread as evenly as integers allow and none is dropped when R > N.
    """
    if position > total_new:
        return 0
    return (position * total_replay) // total_new - ((position - 1) * total_replay) // total_new


@register_method
class Replay(Method):
    name = "replay"
    summary = "Experience replay: a seeded buffer of earlier tasks' examples mixed into training."
    params_class = ReplayParams
    owns_batch_schedule = True

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        if self.params.schedule not in ("mixed", "interleaved"):
            raise ConfigError(f"{self.name}.schedule: {self.params.schedule!r} is not one of mixed, interleaved")
        if self.params.count is None and not 0 < self.params.ratio <= 1:
            raise ConfigError(f"{self.name}.ratio: must be in (0, 1], got {self.params.ratio}")
        if self.params.count is not None and self.params.count <= 0:
            raise ConfigError(f"{self.name}.count: must be positive, got {self.params.count}")
        if self.params.batch_size is not None and self.params.batch_size <= 0:
            raise ConfigError(f"{self.name}.batch_size: must be positive or null, got {self.params.batch_size}")
        self.buffer: dict[int, list[int]] = {}
        #: False keeps the buffer out of the tasks' batches, for a method that replays it in its
        #: own phase (KIF-M sets it in setup); the buffer is still filled and saved as usual.
        self.mix_into_tasks = True

    # -- the buffer ------------------------------------------------------------------------

    def buffer_size_for(self, task: "Task") -> int:
        if self.params.count is not None:
            return self.params.count
        return max(1, round(self.params.ratio * len(task.train)))

    def buffer_items(self, ctx: "RunContext", exclude_current: bool = True) -> list[EncodedExample]:
        """Encoded buffer examples of every earlier task (those of the current phase excluded)."""
        current = set(ctx.phase.task_indices) if exclude_current else set()
        items: list[EncodedExample] = []
        for task_index, indices in sorted(self.buffer.items()):
            if task_index in current:
                continue
            encoded = ctx.encoded(task_index, "train")
            items.extend(encoded[i] for i in indices)
        return items

    def on_task_end(self, ctx: "RunContext") -> None:
        for task_index in ctx.phase.task_indices:
            task = ctx.stream.tasks[task_index]
            self.buffer[task_index] = sample_buffer(
                task, self.buffer_size_for(task), self.params.balanced, f"{ctx.config.seed}-replay-{task_index}"
            )
        ctx.logger.info("replay buffer: %d examples from %d tasks", sum(map(len, self.buffer.values())), len(self.buffer))

    # -- the schedule ----------------------------------------------------------------------

    def _replay_batch_size(self, ctx: "RunContext") -> int:
        return self.params.batch_size or ctx.config.train.batch_size

    def extra_micro_batches(self, ctx: "RunContext", new_batches: int) -> int:
        buffer = self.buffer_items(ctx) if self.mix_into_tasks else []
        if not buffer:
            return 0
        if self.params.schedule == "mixed":
            from retain.engine.loop import count_new_batches

            return count_new_batches(ctx, ctx.phase_train_examples() + buffer) - new_batches
        per_epoch = math.ceil(len(buffer) / self._replay_batch_size(ctx))
        return max(1, round(per_epoch * ctx.config.train.epochs))

    def batch_schedule(self, ctx: "RunContext", batches: Iterator[MicroBatch]) -> Iterator[MicroBatch]:
        buffer = self.buffer_items(ctx) if self.mix_into_tasks else []
        if not buffer:
            return batches
        seed = ctx.config.seed * 7919 + ctx.phase_index
        if self.params.schedule == "mixed":
            from retain.engine.loop import epoch_batches

            return epoch_batches(ctx, ctx.phase_train_examples() + buffer, seed)
        return self._interleave(ctx, batches, buffer, seed)

    def _interleave(
        self, ctx: "RunContext", batches: Iterator[MicroBatch], buffer: list[EncodedExample], seed: int
    ) -> Iterator[MicroBatch]:
        from retain.engine.loop import count_new_batches

        total_replay = self.extra_micro_batches(ctx, 0)
        total_new = max(1, count_new_batches(ctx))
        replay_iter = self._cycle(ctx, buffer, seed)
        for position, batch in enumerate(batches, start=1):
            yield batch
            for _ in range(interleave_count(position, total_new, total_replay)):
                yield next(replay_iter)

    def _cycle(self, ctx: "RunContext", buffer: list[EncodedExample], seed: int) -> Iterator[MicroBatch]:
        size = self._replay_batch_size(ctx)
        rounds = 0
        while True:
            yield from ctx.iterate_batches(buffer, batch_size=size, shuffle=True, seed=seed * 31 + rounds, source="replay", shard=True)
            rounds += 1

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": {int(k): list(v) for k, v in self.buffer.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = {int(k): list(v) for k, v in state.get("buffer", {}).items()}

    def log_values(self) -> dict[str, float]:
        return {"replay_buffer": float(sum(map(len, self.buffer.values())))}
