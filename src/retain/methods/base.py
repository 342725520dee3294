"""The method plugin interface: named hooks the engine calls, in the listed order.

A method never owns the training loop. It reacts at hooks and owns its state:

=====================  ==========================================================================
hook                   typical use
=====================  ==========================================================================
``setup``              register forward hooks, add adapters, check the model
``plan_phases``        take over what a training phase is (multi-task: one phase for all tasks)
``on_task_start``      snapshots, new adapters, precomputed teacher outputs
``batch_schedule``     reshape the stream of micro-batches of a task (replay interleaving)
``adjust_loss``        add distillation or regularisation terms, reweight the loss
``after_backward``     edit gradients (masks) before clipping and the optimizer step
``after_step``         importance tracking on the clipped gradients of the step just taken
``on_task_end``        fill buffers, store teacher signals, Fisher, fusion
``state_dict``         everything needed to resume (saved at every task boundary)
=====================  ==========================================================================

Methods declare what they need (LoRA or full weights, model kinds, ownership of the batch
schedule or of the phases) and the engine rejects impossible combinations at start-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch

from retain.config import check_options
from retain.data.collate import MicroBatch

if TYPE_CHECKING:
    from retain.data.types import Stream
    from retain.engine.context import RunContext


@dataclass
class NoParams:
    """A method without parameters."""


@dataclass
class Phase:
    """A training phase: one matrix row. Normally one task; multi-task training has one phase."""

    name: str
    task_indices: list[int]


class Method:
    """Base class of every method; subclasses register with :func:`register_method`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params_class: ClassVar[type] = NoParams
    #: True: needs LoRA; False: needs full fine-tuning; None: either.
    needs_lora: ClassVar[Optional[bool]] = None
    model_kinds: ClassVar[tuple[str, ...]] = ("causal", "seq2seq", "classifier")
    #: distributed modes this method supports (Accelerate's distributed types, lower case).
    distributed: ClassVar[tuple[str, ...]] = ("no", "multi_cpu", "multi_gpu", "fsdp", "deepspeed")
    owns_batch_schedule: ClassVar[bool] = False
    owns_phases: ClassVar[bool] = False
    #: a new optimizer per task is required (e.g. parameters change between tasks).
    needs_fresh_optimizer: ClassVar[bool] = False
    #: names of methods this one cannot be combined with, and why.
    conflicts: ClassVar[dict[str, str]] = {}

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.params_class()
        if dataclasses.is_dataclass(self.params):
            check_options(self.params, self.name)  # ranges and choices declared with each option

    # -- lifecycle hooks -------------------------------------------------------------------

    def setup(self, ctx: "RunContext") -> None:
        """Called once after the model is built (and before a resume restores state)."""

    def plan_phases(self, stream: "Stream") -> Optional[list[Phase]]:
        """Return the training phases, or None to keep one phase per task."""
        return None

    def on_task_start(self, ctx: "RunContext") -> None:
        """Called before the optimizer of a phase is built."""

    def batch_schedule(self, ctx: "RunContext", batches: Iterator[MicroBatch]) -> Iterator[MicroBatch]:
        """Reshape the micro-batches of the current phase (default: unchanged)."""
        return batches

    def extra_micro_batches(self, ctx: "RunContext", new_batches: int) -> int:
        """How many micro-batches :meth:`batch_schedule` adds (progress bar and LR schedule)."""
        return 0

    def adjust_loss(
        self, ctx: "RunContext", batch: MicroBatch, outputs: Any, loss: torch.Tensor
    ) -> torch.Tensor:
        """Return the loss to back-propagate (default: unchanged)."""
        return loss

    def after_backward(self, ctx: "RunContext") -> None:
        """Gradients of a whole accumulation window are ready; clipping has not happened."""

    def after_step(self, ctx: "RunContext") -> None:
        """The optimizer stepped; gradients (clipped) are still in ``.grad``."""

    def on_task_end(self, ctx: "RunContext") -> None:
        """Training of the phase is over; evaluation comes next."""

    def log_values(self) -> dict[str, float]:
        """Scalars to log after each phase (e.g. fraction of rows a mask kept)."""
        return {}

    def report_sections(self, ctx: "RunContext") -> list[tuple[str, str]]:
        """Extra (title, markdown) sections for the run report."""
        return []

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; may restructure the model (new adapters)."""


def params_to_dict(params: Any) -> dict[str, Any]:
    return dataclasses.asdict(params) if dataclasses.is_dataclass(params) else {}
