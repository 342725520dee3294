"""Gradient norms before clipping, per batch source, over a phase: what clipping did to its steps.

``train.max_grad_norm`` scales a step's whole gradient to the bound. When one source's steps (a
method's replay micro-batches, say) have norms far above it, every loss term of those steps is
scaled down by the same factor: a distillation term a hundred times larger than the CE beside it
leaves that CE a hundredth of its step. The phase line shows the means; a mean above
:data:`CLIPPED_FACTOR` times the bound is logged as a warning.
"""

from __future__ import annotations

from typing import Optional

import torch

#: a source's mean norm above this many times ``train.max_grad_norm`` gets a warning
CLIPPED_FACTOR = 100.0


#: the key of the mean over every step, sources mixed or not (with ``overall``)
ALL_STEPS = ""


class GradNormWatch:
    """Device-side sums of the steps' norms per source (one host read per :meth:`means`).

    ``overall``: also keep the mean over every step under :data:`ALL_STEPS` (the trackers' plain
    ``train/grad_norm``).
    """

    def __init__(self, overall: bool = False) -> None:
        self.overall = overall
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, norm: Optional[torch.Tensor], sources: set[str]) -> None:
        """One step's norm, kept under its source when all its micro-batches share one."""
        if norm is None:
            return
        keys = ([ALL_STEPS] if self.overall else []) + ([next(iter(sources))] if len(sources) == 1 else [])
        value = torch.as_tensor(norm).detach().float()
        for key in keys:
            self.sums[key] = self.sums[key] + value if key in self.sums else value.clone()
            self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        """Mean norm per source over the steps added."""
        return pooled_means([self.totals()])

    def totals(self) -> dict[str, tuple[float, int]]:
        """(summed norm, steps) per source: what the totals of several processes add up from."""
        if not self.sums:
            return {}
        keys = sorted(self.sums)
        values = torch.stack([self.sums[key].reshape(()) for key in keys]).tolist()  # one host read
        return {key: (float(value), self.counts[key]) for key, value in zip(keys, values)}

    def clear(self) -> None:
        self.sums.clear()
        self.counts.clear()


def pooled_means(totals: list[dict[str, tuple[float, int]]]) -> dict[str, float]:
    """Mean norm per source over the steps of every :meth:`GradNormWatch.totals` given (one per
    process): the sums added, divided by the steps added."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for part in totals:
        for source, (total, steps) in part.items():
            sums[source] = sums.get(source, 0.0) + total
            counts[source] = counts.get(source, 0) + steps
    return {source: sums[source] / counts[source] for source in sorted(sums) if counts[source]}


def clipped_sources_warning(phase: str, means: dict[str, float], max_norm: Optional[float]) -> Optional[str]:
    """The warning for the sources whose mean norm is above :data:`CLIPPED_FACTOR` times the bound."""
    if max_norm is None:
        return None
    over = {source: norm for source, norm in means.items() if norm > CLIPPED_FACTOR * max_norm}
    if not over:
        return None
    listed = ", ".join(f"{source} steps {norm:.4g} (scaled down about {norm / max_norm:.0f}-fold)" for source, norm in over.items())
    return (
        f"task {phase}: mean gradient norm before clipping at train.max_grad_norm {max_norm:g}: {listed}. "
        "Clipping scales every loss term of those steps alike, so a term far larger than the rest "
        "(a distillation or penalty weight too large for this model) leaves the others almost no "
        "update; see train/grad_norm in steps.jsonl"
    )
