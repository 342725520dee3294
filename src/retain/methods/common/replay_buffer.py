"""The replay buffer: a seeded sample of each finished task's training examples, and how it joins
a task's batches.

Held by every method that replays (``replay``, ``der``, ``seekr``, a method of your own). The
buffer stores, per finished task, the indices of the sampled training examples (the stream is
rebuilt identically from the config and seed, so indices are enough to resume). Two schedules:

- ``mixed``: buffer examples are shuffled together with the new task's data;
- ``interleaved``: separate replay micro-batches (``source == 'replay'``, each with its own
  backward), about one pass over the buffer per epoch, spread evenly over the task: after new
  batch ``i`` of ``N`` come ``floor(i R / N) - floor((i - 1) R / N)`` of the ``R`` replay batches,
  so exactly ``R`` are emitted even when ``R > N``. Holders that treat replay batches differently
  (distillation) look at ``batch.source``.

A method that replays the buffer in its own step instead (KIF-M) declares the capability
``replays_buffer_after_task``; the buffer then stays out of the tasks' batches (still filled and
saved as usual).
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from retain.config import option
from retain.data.collate import EncodedExample
from retain.methods.common.batch_plan import BatchPlan, cycled_batches

if TYPE_CHECKING:
    from retain.data.types import Task
    from retain.engine.context import RunContext

SCHEDULES = ("mixed", "interleaved")
#: capability of a method that replays the buffer after a task, not inside the tasks' batches
REPLAYS_AFTER_TASK = "replays_buffer_after_task"


@dataclass
class ReplayParams:
    ratio: float = option(
        "Fraction of each finished task's training set kept (e.g. 0.01, 0.02, 0.1).", 0.02,
        low=0.0, high=1.0, low_open=True,
    )
    count: Optional[int] = option("A fixed number of examples per task instead of ratio.", None, low=1)
    balanced: bool = option("Sample the same number of examples per label (label-set tasks).", False)
    schedule: str = option(
        "mixed (shuffled with the new data) | interleaved (separate replay micro-batches).", "mixed", choices=SCHEDULES
    )
    batch_size: Optional[int] = option("Replay micro-batch size (interleaved); null = train.batch_size.", None, low=1)


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


class ReplayBuffer:
    """Per finished task, the indices of its kept training examples; joins the batch plan."""

    def __init__(self, params: ReplayParams) -> None:
        self.params = params
        self.indices: dict[int, list[int]] = {}
        #: False keeps the buffer out of the tasks' batches (a method replays it in its own step).
        self.mixes_into_tasks = True

    def setup(self, ctx: "RunContext") -> None:
        self.mixes_into_tasks = not ctx.declares(REPLAYS_AFTER_TASK)

    # -- what is kept ----------------------------------------------------------------------

    def size_for(self, task: "Task") -> int:
        if self.params.count is not None:
            return self.params.count
        return max(1, round(self.params.ratio * len(task.train)))

    def draw(self, ctx: "RunContext", task_index: int) -> list[int]:
        """The indices kept for ``task_index`` (they depend on the task and the run seed only)."""
        task = ctx.stream.tasks[task_index]
        return sample_buffer(task, self.size_for(task), self.params.balanced, f"{ctx.config.seed}-replay-{task_index}")

    def fill(self, ctx: "RunContext") -> None:
        """Keep the examples of the phase's tasks (at the end of the phase)."""
        for task_index in ctx.state.phase.task_indices:
            self.indices[task_index] = self.draw(ctx, task_index)
        ctx.logger.info("replay buffer: %d examples from %d tasks", len(self), len(self.indices))

    def items(self, ctx: "RunContext", exclude_current: bool = True) -> list[EncodedExample]:
        """Encoded buffer examples of every earlier task (those of the current phase excluded)."""
        current = set(ctx.state.phase.task_indices) if exclude_current else set()
        items: list[EncodedExample] = []
        for task_index, indices in sorted(self.indices.items()):
            if task_index in current:
                continue
            encoded = ctx.encoded(task_index, "train")
            items.extend(encoded[i] for i in indices)
        return items

    def task_items(self, ctx: "RunContext", task_index: int) -> list[EncodedExample]:
        encoded = ctx.encoded(task_index, "train")
        return [encoded[i] for i in self.indices[task_index]]

    def __len__(self) -> int:
        return sum(map(len, self.indices.values()))

    # -- how it joins a task's batches ------------------------------------------------------

    def batch_size(self, ctx: "RunContext") -> int:
        return self.params.batch_size or ctx.config.train.batch_size

    def extend_plan(self, ctx: "RunContext", plan: BatchPlan) -> BatchPlan:
        """The plan with the buffer mixed in or interleaved (unchanged when empty or kept out)."""
        buffer = self.items(ctx) if self.mixes_into_tasks else []
        if not buffer:
            return plan
        if self.params.schedule == "mixed":
            return plan.mixed_with(buffer)
        size = self.batch_size(ctx)
        count = max(1, round(math.ceil(len(buffer) / size) * plan.epochs))
        return plan.interleaved(cycled_batches(buffer, size, count, plan.seed, "replay"))

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": {int(k): list(v) for k, v in self.indices.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.indices = {int(k): list(v) for k, v in state.get("buffer", {}).items()}
