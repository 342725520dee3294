"""What the trackers get during training: loss, learning rate and each method's loss term.

Per micro-batch the values are added up on the device (no host sync); every
``train.logging_steps`` optimizer steps, and at the end of a phase, their means are read back
once and logged through ``accelerator.log`` (main process only) at the run's global step:

    train/loss         the mean task loss plus every method's term (what was back-propagated)
    train/lr           the learning rate of the first parameter group
    train/grad_norm    the mean total gradient norm of the steps, before clipping (where the
                       backend reports it: not under DeepSpeed, which clips inside its engine)
    train/grad_norm/<source>  the same over the steps whose micro-batches all came from one
                       source (``new``, ``replay``): a replay step whose norm is far above
                       ``train.max_grad_norm`` is scaled down whole, every loss term in it alike
    loss/<method>      the mean of what the method's ``on_loss`` added (distillation, penalty ...)
    method/<key>       the methods' ``on_log`` statistics, at the end of each phase
    matrix/<task>      the scores of a matrix row, logged right after the row is evaluated
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from retain.engine.grad_norms import ALL_STEPS, GradNormWatch


class StepLog:
    """Device-side sums of the logged values between two records (see the module docstring)."""

    def __init__(self, accelerator: Any, every: int) -> None:
        self.accelerator = accelerator
        self.every = every
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        # gradient norms are per optimizer step, not per micro-batch: their own sums and counts
        self.norms = GradNormWatch(overall=True)
        self.last_step: Optional[int] = None  # the step of the last record (one record per step)
        # the rate the last optimizer step used: a phase's closing record comes after the
        # scheduler has moved on (to 0 at the end of a linear decay)
        self.step_lr: Optional[float] = None

    @property
    def enabled(self) -> bool:
        return bool(getattr(self.accelerator, "trackers", None))

    def add(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """One micro-batch's loss (as back-propagated) and the methods' terms in it."""
        if not self.enabled:
            return
        for key, value in (("train/loss", loss), *((f"loss/{name}", term) for name, term in terms.items())):
            value = value.detach().float()
            if key in self.sums:
                self.sums[key] += value
            else:
                self.sums[key] = value.clone()
        self.count += 1

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
        values: dict[str, Any] = {key: float(total.item()) / self.count for key, total in self.sums.items()}
        for source, norm in self.norms.means().items():
            values["train/grad_norm" if source == ALL_STEPS else f"train/grad_norm/{source}"] = norm
        if self.step_lr is not None:
            values["train/lr"] = self.step_lr
        self._clear()
        self.last_step = global_step
        self.accelerator.log(values, step=global_step)

    def _clear(self) -> None:
        self.sums.clear()
        self.count = 0
        self.norms.clear()

    def log(self, values: dict[str, Any], step: int) -> None:
        if self.enabled and values:
            self.accelerator.log(values, step=step)


def _learning_rate(optimizer: Any) -> Optional[float]:
    groups = getattr(optimizer, "param_groups", None)
    if not groups:
        return None
    return float(groups[0]["lr"])
