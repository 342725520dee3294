"""The batch plan of a phase: every micro-batch the engine will train on, listed and counted up front.

The engine builds the plan of the phase's own data (``new`` batches, ``train.epochs`` shuffled
passes), then each method may extend it in turn (``on_plan_batches``): replay inserts or mixes in
buffer batches. Because the plan is a list, its length is known before training starts, so the
learning-rate schedule and the progress bar need no second count, and every shuffle of a phase is
seeded from one number, :func:`phase_seed`.

Division over data-parallel processes happens in one place, :class:`Shard`: each shuffled pass
is cut into chunks of the batch size, the chunk list is cut to a multiple of the process count and
each process takes every n-th chunk, so all processes see the same number of batches and none
waits for a gradient all-reduce that never comes. (Spreading replay schedules evenly over ranks,
and never leaving a rank an empty shard, is a separate change; it belongs in :class:`Shard` and
the plan builders here, not in the methods.)
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any


def phase_seed(run_seed: int, phase_index: int) -> int:
    """The seed of every shuffle of phase ``phase_index``: new-task order, replay order, extra steps."""
    return run_seed * 7919 + phase_index


@dataclass(frozen=True)
class Shard:
    """This process's share of a list of batches: every ``world``-th, starting at ``rank``."""

    rank: int = 0
    world: int = 1

    def take(self, chunks: list[list[int]]) -> list[list[int]]:
        if self.world <= 1:
            return chunks
        kept = chunks[: len(chunks) - len(chunks) % self.world]
        return kept[self.rank :: self.world]

    def per_process(self, count: int) -> int:
        """Batches each process gets out of ``count`` (what :meth:`take` keeps)."""
        return count // self.world


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


@dataclass
class BatchPlan:
    """The micro-batches of a phase, in training order.

    ``new_items``, ``batch_size`` and ``epochs`` describe the phase's own data, so that a method
    can rebuild the new-task part over more examples (:meth:`mixed_with`) with the same seed.
    """

    batches: list[PlannedBatch]
    seed: int
    shard: Shard = field(default_factory=Shard)
    new_items: list[Any] = field(default_factory=list)
    batch_size: int = 1
    epochs: float = 1.0

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[PlannedBatch]:
        return iter(self.batches)

    def count(self, source: str) -> int:
        return sum(1 for b in self.batches if b.source == source)

    # -- building --------------------------------------------------------------------------

    @classmethod
    def over_epochs(
        cls, items: Sequence[Any], batch_size: int, epochs: float, seed: int, shard: Shard = Shard()
    ) -> "BatchPlan":
        """``epochs`` shuffled passes over ``items`` (a fractional epoch cuts the last pass short).

        Pass ``e`` is shuffled with ``seed * 1000 + e``.
        """
        items = list(items)
        full = int(math.floor(epochs))
        chunks: list[list[int]] = []
        for epoch in range(full):
            chunks += shard.take(shuffled_chunks(len(items), batch_size, seed * 1000 + epoch))
        fraction = epochs - full
        if fraction > 0:
            per_process = shard.per_process(math.ceil(len(items) / batch_size))
            last = shard.take(shuffled_chunks(len(items), batch_size, seed * 1000 + full))
            chunks += last[: int(round(fraction * per_process))]
        batches = [PlannedBatch([items[i] for i in chunk]) for chunk in chunks]
        return cls(batches, seed, shard, items, batch_size, epochs)

    def mixed_with(self, extra: Sequence[Any]) -> "BatchPlan":
        """The plan rebuilt over the phase's data plus ``extra`` examples, shuffled together."""
        return BatchPlan.over_epochs(self.new_items + list(extra), self.batch_size, self.epochs, self.seed, self.shard)

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
        return BatchPlan(out, self.seed, self.shard, self.new_items, self.batch_size, self.epochs)


def cycled_batches(
    items: Sequence[Any], batch_size: int, count: int, seed: int, source: str, shard: Shard = Shard()
) -> list[PlannedBatch]:
    """``count`` batches over ``items``, pass after pass, pass ``r`` shuffled with ``seed * 31 + r``."""
    items = list(items)
    out: list[PlannedBatch] = []
    rounds = 0
    while len(out) < count:
        chunks = shard.take(shuffled_chunks(len(items), batch_size, seed * 31 + rounds))
        if not chunks:  # fewer batches than processes: nothing this process could take
            break
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
