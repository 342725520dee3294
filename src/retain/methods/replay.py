"""Experience replay: a buffer of earlier tasks' training examples mixed into the new task.

The buffer holds, per finished task, the indices of the sampled training examples (the stream is
rebuilt identically from the config and seed, so indices are enough to resume). Two schedules:

- ``mixed``: buffer examples are shuffled together with the new task's data;
- ``interleaved``: separate replay micro-batches, one every ``floor(new / replay)`` new ones,
  about one pass over the buffer per epoch (each with its own backward). Subclasses that treat
  replay batches differently (distillation) use this one and look at ``batch.source``.
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


@register_method
class Replay(Method):
    name = "replay"
    summary = "Experience replay: a seeded buffer of earlier tasks' examples mixed into training."
    params_class = ReplayParams
    owns_batch_schedule = True

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        if self.params.schedule not in ("mixed", "interleaved"):
            raise ConfigError(f"replay.schedule: {self.params.schedule!r} is not one of mixed, interleaved")
        if self.params.count is None and not 0 < self.params.ratio <= 1:
            raise ConfigError(f"replay.ratio: must be in (0, 1], got {self.params.ratio}")
        if self.params.count is not None and self.params.count <= 0:
            raise ConfigError(f"replay.count: must be positive, got {self.params.count}")
        self.buffer: dict[int, list[int]] = {}

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
        buffer = self.buffer_items(ctx)
        if not buffer:
            return 0
        if self.params.schedule == "mixed":
            from retain.engine.loop import count_new_batches

            return count_new_batches(ctx, ctx.phase_train_examples() + buffer) - new_batches
        per_epoch = math.ceil(len(buffer) / self._replay_batch_size(ctx))
        return max(1, round(per_epoch * ctx.config.train.epochs))

    def batch_schedule(self, ctx: "RunContext", batches: Iterator[MicroBatch]) -> Iterator[MicroBatch]:
        buffer = self.buffer_items(ctx)
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
        interval = max(1, count_new_batches(ctx) // total_replay)
        replay_iter = self._cycle(ctx, buffer, seed)
        emitted = 0
        for position, batch in enumerate(batches, start=1):
            yield batch
            if position % interval == 0 and emitted < total_replay:
                emitted += 1
                yield next(replay_iter)

    def _cycle(self, ctx: "RunContext", buffer: list[EncodedExample], seed: int) -> Iterator[MicroBatch]:
        size = self._replay_batch_size(ctx)
        rounds = 0
        while True:
            yield from ctx.iterate_batches(buffer, batch_size=size, shuffle=True, seed=seed * 31 + rounds, source="replay")
            rounds += 1

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": {int(k): list(v) for k, v in self.buffer.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer = {int(k): list(v) for k, v in state.get("buffer", {}).items()}

    def log_values(self) -> dict[str, float]:
        return {"replay_buffer": float(sum(map(len, self.buffer.values())))}
