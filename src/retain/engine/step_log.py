"""What the trackers get during training: loss, learning rate and each method's loss term.

Per micro-batch the values are added up on the device (no host sync); every
``train.logging_steps`` optimizer steps, and at the end of a phase, their means are read back
once and logged through ``accelerator.log`` (main process only) at the run's global step.
Under data parallelism every process keeps its own sums, and a record pools them (one gather
of the sums and counts per record, not per micro-batch): the loss is the mean over every
process's trained micro-batches (a pad, the copy a process short of a batch runs with weight 0,
is left out), which is what one process with ``grad_accum`` times the process count logs for the
same steps and, where every process trained as many, the mean over processes. Before, a record
held the main process's micro-batches alone.

    train/loss         the mean task loss plus every method's term (what was back-propagated)
    train/lr           the learning rate of the first parameter group
    train/grad_norm    the mean total gradient norm of the steps, before clipping (where the
                       backend reports it: not under DeepSpeed, which clips inside its engine)
    train/grad_norm/<source>  the same over the steps whose micro-batches all came from one
                       source (``new``, ``replay``): a replay step whose norm is far above
                       ``train.max_grad_norm`` is scaled down whole, every loss term in it alike
                       (under data parallelism: a process's micro-batches of the step)
    loss/<method>      the mean of what the method's ``on_loss`` added (distillation, penalty ...)
    method/<key>       the methods' ``on_log`` statistics, at the end of each phase
    matrix/<task>      the scores of a matrix row, logged right after the row is evaluated
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from retain.engine.collective import gather_objects
from retain.engine.grad_norms import ALL_STEPS, GradNormWatch, pooled_means


class StepLog:
    """Device-side sums of the logged values between two records (see the module docstring)."""

    def __init__(self, accelerator: Any, every: int) -> None:
        self.accelerator = accelerator
        self.every = every
        self.sums: dict[str, torch.Tensor] = {}
        # micro-batches since the last record: all of them (the same on every process, so every
        # process decides alike when a record is due) and those that trained (not pads)
        self.count = 0
        self.trained = 0
        # gradient norms are per optimizer step, not per micro-batch: their own sums and counts
        self.norms = GradNormWatch(overall=True)
        self.last_step: Optional[int] = None  # the step of the last record (one record per step)
        # the rate the last optimizer step used: a phase's closing record comes after the
        # scheduler has moved on (to 0 at the end of a linear decay)
        self.step_lr: Optional[float] = None

    @property
    def enabled(self) -> bool:
        """Whether the run logs to trackers: on every process, not only where they were started
        (Accelerate starts them on the main process), since every process adds to a record and
        takes part in its reduction."""
        accelerator = self.accelerator
        return bool(getattr(accelerator, "trackers", None) or getattr(accelerator, "log_with", None))

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor], weight: float = 1.0) -> None:
        """One micro-batch's loss (as back-propagated) and the methods' terms in it.

        ``weight`` 0: a pad (a copy of a real batch that trains nothing, on a process short of a
        batch): it counts towards when a record is due, not towards its means.
        """
        if not self.enabled:
            return
        self.count += 1
        if not weight:
            return
        self.trained += 1
        for key, value in (("train/loss", loss), *((f"loss/{name}", term) for name, term in terms.items())):
            value = value.detach().float()
            if key in self.sums:
                self.sums[key] += value
            else:
                self.sums[key] = value.clone()

    def add_grad_norm(self, norm: Optional[torch.Tensor], sources: set[str]) -> None:
        """One optimizer step's total gradient norm (before clipping) and its micro-batches' sources.

        ``norm`` None (a backend that does not report it) logs nothing."""
        if self.enabled:
            self.norms.add(norm, sources)

    def step_done(self, global_step: int, optimizer: Any, force: bool = False) -> None:
        """After an optimizer step, before the scheduler's: log the means so far every ``every`` steps.

        ``force`` (a phase's closing record, after the scheduler stepped) logs what is left, with the
        rate of the last step taken."""
        if not self.enabled:
            return
        if not force:
            self.step_lr = _learning_rate(optimizer)
        if not self.count or not (force or global_step % self.every == 0):
            return
        if global_step == self.last_step:
            # micro-batches of an accumulation window the phase ended before completing: no step
            # of their own, and the step they follow is already recorded
            self._clear()
            return
        means, norms = self._pooled()
        values: dict[str, Any] = dict(means)
        for source, norm in norms.items():
            values["train/grad_norm" if source == ALL_STEPS else f"train/grad_norm/{source}"] = norm
        if self.step_lr is not None:
            values["train/lr"] = self.step_lr
        self._clear()
        self.last_step = global_step
        if values:  # empty only where every process's window was pads, which the plans never give
            self.accelerator.log(values, step=global_step)

    def _pooled(self) -> tuple[dict[str, float], dict[str, float]]:
        """The record's means over every process's micro-batches (see the module docstring) and
        its gradient norms per source over every process's steps: one gather per record.

        Every process comes here at the same steps with the same micro-batch count (the batch
        plans give every process as many, pads included); a method's term may be missing on a
        process whose micro-batches had none, and counts as 0 there, as it does in one process.
        """
        keys = list(self.sums)
        totals = torch.stack([self.sums[key].reshape(()) for key in keys]).tolist() if keys else []  # one host read
        mine = (self.trained, dict(zip(keys, totals)), self.norms.totals())
        many = getattr(self.accelerator, "num_processes", 1) > 1
        parts = gather_objects(self.accelerator, mine) if many else [mine]
        count = sum(part_count for part_count, _, _ in parts)
        sums: dict[str, float] = {}
        for _, part_sums, _ in parts:
            for key, total in part_sums.items():
                sums[key] = sums.get(key, 0.0) + total
        return {key: total / max(1, count) for key, total in sums.items()}, pooled_means([norms for _, _, norms in parts])

    def _clear(self) -> None:
        self.sums.clear()
        self.count = 0
        self.trained = 0
        self.norms.clear()

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.enabled and values:
            self.accelerator.log(values, step=step)


def _learning_rate(optimizer: Any) -> Optional[float]:
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None
    return float(groups[0]["lr"])
