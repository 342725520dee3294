"""The batch plan of a phase: every micro-batch the engine will train on, listed and counted up front.

The engine builds the plan of the phase's own data (``new`` batches, ``train.epochs`` shuffled
passes), then each method may extend it in turn (``on_plan_batches``): replay inserts or mixes in
buffer batches. Because the plan is a list, its length is known before training starts, so the
learning-rate schedule and the progress bar need no second count, and every shuffle of a phase is
seeded from one number, :func:`phase_seed`.

Plans are built for the whole run, as one process would train them; methods never see
processes. Division over data-parallel processes happens in one place, :meth:`BatchPlan.for_process`
(the engine calls it after every method has extended the plan): micro-batch ``k`` of the plan goes
to process ``k mod N``. So one optimizer step of ``N`` processes (``grad_accum`` micro-batches
each) consumes the same micro-batches as one step of a single process with ``grad_accum * N``,
replay included, and ``N`` processes train on the single-process count of new and replay batches
in total. When the plan does not divide evenly, the processes short of a batch get one *pad*
micro-batch (a copy of a real one with ``weight`` 0: its gradient is zero), so that every process
runs the same number of steps and none waits for an all-reduce that never comes; a plan shorter
than the process count (a one-batch replay buffer on eight GPUs) still gives every process its
steps.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional, TypeVar

T = TypeVar("T")


#: source of the weightless micro-batches that even out processes (see the module docstring)
PAD = "pad"


def phase_seed(run_seed: int, phase_index: int) -> int:
    """The seed of every shuffle of phase ``phase_index``: new-task order, replay order, extra steps."""
    return run_seed * 7919 + phase_index


@dataclass(frozen=True)
class Shard:
    """This process's share of a list: every ``world``-th item, starting at ``rank``."""

    rank: int = 0
    world: int = 1

    def take(self, items: Sequence[T]) -> list[T]:
        """Items ``rank, rank + world, ...`` (possibly fewer than another process's)."""
        return list(items)[self.rank :: self.world] if self.world > 1 else list(items)

    def per_process(self, count: int) -> int:
        """The most items a process gets out of ``count``: what every process runs after padding."""
        return -(-count // self.world)


def shuffled_chunks(count: int, batch_size: int, seed: int, shuffle: bool = True) -> list[list[int]]:
    """Indices ``0..count-1`` (shuffled with ``seed``), cut into chunks of ``batch_size``."""
    order = list(range(count))
    if shuffle:
        random.Random(seed).shuffle(order)
    return [order[start : start + batch_size] for start in range(0, count, batch_size)]


@dataclass
class PlannedBatch:
    """One micro-batch of the plan: which examples, and where they come from (``new``/``replay``)."""

    items: list[Any]
    source: str = "new"
    #: multiplies the micro-batch's loss; 0 for the pads that even out processes (see the module)
    weight: float = 1.0
    #: the mean ``weight`` over the processes' micro-batches at this position of their shares
    #: (None: one process, where it is ``weight``). A loss term on the parameter rows only this
    #: process holds gets no average over processes, so it is weighted by this instead
    #: (:meth:`~retain.engine.context.RunContext.add_shard_term`)
    shared_weight: Optional[float] = None

    @property
    def weight_over_processes(self) -> float:
        return self.weight if self.shared_weight is None else self.shared_weight


@dataclass
class BatchPlan:
    """The micro-batches of a phase, in training order.

    ``new_items``, ``batch_size`` and ``epochs`` describe the phase's own data, so that a method
    can rebuild the new-task part over more examples (:meth:`mixed_with`) with the same seed.
    """

    batches: list[PlannedBatch]
    seed: int
    new_items: list[Any] = field(default_factory=list)
    batch_size: int = 1
    epochs: float = 1.0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[PlannedBatch]:
        return iter(self.batches)

    def count(self, source: str) -> int:
        """Real (not pad) micro-batches from ``source``."""
        return sum(1 for b in self.batches if b.source == source and b.weight)

    def for_process(self, shard: Shard) -> "BatchPlan":
        """This process's micro-batches: every ``world``-th, padded to the longest share.

        A pad repeats the process's last real micro-batch (or the plan's first, when the process
        has none) with weight 0 and source :data:`PAD`, so its forward and backward run like any
        other and add nothing; a method that gathers statistics in the forward skips it by source.
        """
        if shard.world <= 1 or not self.batches:
            return self
        mine = shard.take(self.batches)
        steps = shard.per_process(len(self.batches))
        template = mine[-1] if mine else self.batches[0]
        mine += [PlannedBatch(template.items, PAD, 0.0) for _ in range(steps - len(mine))]
        world = shard.world
        for position, planned in enumerate(mine):
            row = self.batches[position * world : (position + 1) * world]  # every process's batch here
            shared = sum(b.weight for b in row) / world
            mine[position] = PlannedBatch(planned.items, planned.source, planned.weight, shared)
        return BatchPlan(mine, self.seed, self.new_items, self.batch_size, self.epochs)

    # -- building --------------------------------------------------------------------------

    @classmethod
    def over_epochs(cls, items: Sequence[Any], batch_size: int, epochs: float, seed: int) -> "BatchPlan":
        """``epochs`` shuffled passes over ``items`` (a fractional epoch cuts the last pass short).

        Pass ``e`` is shuffled with ``seed * 1000 + e``.
        """
        items = list(items)
        full = int(math.floor(epochs))
        chunks: list[list[int]] = []
        for epoch in range(full):
            chunks += shuffled_chunks(len(items), batch_size, seed * 1000 + epoch)
        fraction = epochs - full
        if fraction > 0:
            per_pass = math.ceil(len(items) / batch_size)
            last = shuffled_chunks(len(items), batch_size, seed * 1000 + full)
            chunks += last[: int(round(fraction * per_pass))]
        batches = [PlannedBatch([items[i] for i in chunk]) for chunk in chunks]
        return cls(batches, seed, items, batch_size, epochs)

    def mixed_with(self, extra: Sequence[Any]) -> "BatchPlan":
        """The plan rebuilt over the phase's data plus ``extra`` examples, shuffled together."""
        return BatchPlan.over_epochs(self.new_items + list(extra), self.batch_size, self.epochs, self.seed)

    def interleaved(self, inserted: list[PlannedBatch]) -> "BatchPlan":
        """``inserted`` spread evenly after the new batches (see :func:`interleave_count`)."""
        total_new = max(1, self.count("new"))
        out: list[PlannedBatch] = []
        queue = iter(inserted)
        position = 0
        for batch in self.batches:
            out.append(batch)
            if batch.source != "new":
                continue
            position += 1
            for _ in range(interleave_count(position, total_new, len(inserted))):
                out.append(next(queue))
        return BatchPlan(out, self.seed, self.new_items, self.batch_size, self.epochs)


def cycled_batches(items: Sequence[Any], batch_size: int, count: int, seed: int, source: str) -> list[PlannedBatch]:
    """``count`` batches over ``items``, pass after pass, pass ``r`` shuffled with ``seed * 31 + r``."""
    items = list(items)
    out: list[PlannedBatch] = []
    rounds = 0
    while items and len(out) < count:
        chunks = shuffled_chunks(len(items), batch_size, seed * 31 + rounds)
        out += [PlannedBatch([items[i] for i in chunk], source) for chunk in chunks[: count - len(out)]]
        rounds += 1
    return out


def passes(items: Sequence[Any], batch_size: int, epochs: int, seed: int, source: str) -> list[PlannedBatch]:
    """``epochs`` whole shuffled passes over ``items``, pass ``e`` shuffled with ``seed * 100 + e``."""
    items = list(items)
    return [
        PlannedBatch([items[i] for i in chunk], source)
        for epoch in range(epochs)
        for chunk in shuffled_chunks(len(items), batch_size, seed * 100 + epoch)
    ]


def interleave_count(position: int, total_new: int, total_inserted: int) -> int:
    """Inserted batches to place right after new batch ``position`` (1-based) of ``total_new``.

    The running total ``floor(position * R / N)`` reaches ``R`` at the last new batch, so the
    ``R`` inserted batches are spread as evenly as integers allow and none is dropped when R > N.
    """
    if position > total_new:
        return 0
    return (position * total_inserted) // total_new - ((position - 1) * total_inserted) // total_new
