"""The method plugin interface: named hooks the engine calls, in the listed order.

A method never owns the training loop. It reacts at hooks, holds its components (a replay
buffer, a teacher store) and owns its state. Every hook is named ``on_<moment>``; the engine's
dispatcher (:mod:`retain.engine.hooks`) calls it on each method of the run in list order and
combines the answers by the rule given here:

=====================  ===========  ============================================================
hook                   combination  typical use
=====================  ===========  ============================================================
``on_setup``           each         register forward hooks, add adapters, check the model
``on_plan_phases``     last answer  take over what a training phase is (multi-task: one phase)
``on_phase_start``     each         snapshots, new adapters, precomputed teacher outputs
``on_plan_batches``    chain        extend the phase's batch plan (replay batches)
``on_batch_start``     each         prepare for the forward of one micro-batch (arm a capture)
``on_loss``            chain        add distillation or regularisation terms, reweight the loss
``on_backward_end``    each         edit gradients (masks) before clipping and the optimizer step
``on_step_end``        each         importance tracking on the clipped gradients of the step
``on_phase_end``       each; steps  fill buffers, store teacher signals, Fisher, fusion; may ask
                                    the engine for extra optimizer steps (:class:`ExtraSteps`)
``on_log``             merge        scalars for the phase's log line
``on_run_files``       merge        JSON payloads the run folder writes (name -> payload)
``on_report``          concatenate  (title, markdown) sections of the run report
=====================  ===========  ============================================================

``state_dict`` / ``load_state_dict`` save and restore everything needed to resume.

Methods declare what they need (LoRA or full weights, model kinds, distributed modes) and what
they do, as capabilities (:data:`OWNS_BATCH_SCHEDULE`, :data:`CARRIES_KNOWLEDGE`, ...); the
engine refuses impossible combinations at start-up by capability, never by method name.

The declarations are safe by default: a method that says nothing runs in a single process only
(``distributed``: a DDP, FSDP or ZeRO run with it is refused until it declares the mode, which
also puts it in the shared DDP suite, ``tests/ddp_equivalence.py``), on every model kind
(``model_kinds``, narrowed by the method where it must be), with the capabilities
:meth:`Method.capabilities_for` derives from its parameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional

import torch

from retain.config import check_options, option
from retain.engine.state import Phase
from retain.methods.common.batch_plan import BatchPlan
from retain.models.kinds import MODEL_KINDS

if TYPE_CHECKING:
    from retain.data.collate import MicroBatch
    from retain.data.types import Stream
    from retain.engine.context import RunContext

__all__ = [
    "Method", "NoParams", "Phase", "ExtraSteps", "StepStats", "COMPAT_MODES", "compat_option",
    "DISTRIBUTED_MODES", "SINGLE_PROCESS",
]

#: every distributed mode a method can declare: Accelerate's distributed types in lower case,
#: with DeepSpeed named by its ZeRO stage (``zero2``, ``zero3``; see retain.engine.sharding).
#: ``multi_gpu`` stands for data parallelism on any device (``multi_cpu`` too; see
#: :func:`retain.methods.registry.supports_mode`).
DISTRIBUTED_MODES = ("no", "multi_cpu", "multi_gpu", "fsdp", "zero2", "zero3")
#: what a method that declares nothing supports: one process
SINGLE_PROCESS = ("no",)

#: decides how a task's micro-batches are formed (at most one method of a run)
OWNS_BATCH_SCHEDULE = "owns_batch_schedule"
#: decides what a training phase is (at most one method of a run)
OWNS_PHASES = "owns_phases"
#: keeps something of earlier tasks (examples, logits, weights, penalties) for later ones
CARRIES_KNOWLEDGE = "carries_knowledge"
#: starts every task from the initial weights
RESETS_MODEL = "resets_model"
#: tracks a set of parameters fixed when the run starts
FIXED_PARAMETERS = "fixed_parameters"
#: adds parameters every task
GROWS_PARAMETERS = "grows_parameters"


#: ``compat`` values: ``retain`` keeps every parameter as given (and its default); ``official``
#: sets each parameter where retain deviates from the authors' released code to that code's value.
COMPAT_MODES = ("retain", "official")


def compat_option(official: dict[str, Any]) -> Any:
    """The ``compat`` field of a method whose released code retain deviates from.

    ``official`` maps each deviating parameter to the released code's value; the help text lists
    them so that `retain list` shows what ``compat: official`` changes. The values are applied by
    :func:`retain.methods.registry.resolve_compat` when the method is built from a config, where
    the keys the user gave are known: a key given beside ``compat: official`` wins, so one
    deviation at a time can be switched back from the official mode.
    """
    settings = ", ".join(f"{key}={value!r}" for key, value in official.items())
    return option(
        f"retain: every parameter as given | official: the authors' released code, i.e. {settings} "
        "(a key given beside it wins).",
        "retain", choices=COMPAT_MODES,
    )


@dataclass
class NoParams:
    """A method without parameters."""


@dataclass
class StepStats:
    """What a run of :class:`ExtraSteps` did."""

    steps: int
    micro_batches: int
    mean_loss: float


@dataclass
class ExtraSteps:
    """Optimizer steps a method asks the engine to run at the end of a phase (KIF-M's replay).

    The engine's loop runs them as it runs a phase (``accelerator.backward``, accumulation over
    ``train.grad_accum``, clipping, the mixed-precision scaler) with a fresh AdamW over
    ``parameters`` (no weight decay, constant ``lr``), calling ``edit_gradients`` before clipping,
    adding ``extra_loss()`` to each micro-batch's loss, and ``done`` with the statistics.
    """

    name: str
    plan: BatchPlan
    parameters: list[torch.nn.Parameter]
    lr: float
    edit_gradients: Callable[[], None] = lambda: None
    extra_loss: Callable[[], Optional[torch.Tensor]] = lambda: None
    done: Callable[[StepStats], None] = lambda stats: None


class Method:
    """Base class of every method; subclasses register with :func:`register_method`."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params_class: ClassVar[type] = NoParams
    #: True: needs LoRA; False: needs full fine-tuning; None: either.
    needs_lora: ClassVar[Optional[bool]] = None
    #: model kinds the method runs on: every kind retain knows unless the method narrows it.
    model_kinds: ClassVar[tuple[str, ...]] = MODEL_KINDS
    #: distributed modes this method supports (a subset of :data:`DISTRIBUTED_MODES`): one process
    #: unless the method declares more, once its math is correct there (a declared ``multi_gpu``
    #: enters the shared DDP suite, which compares 2 processes with 1).
    distributed: ClassVar[tuple[str, ...]] = SINGLE_PROCESS
    #: why the method cannot run under a mode it leaves out (mode -> reason), shown to the user.
    distributed_refusals: ClassVar[dict[str, str]] = {}
    #: what the method does, for the start-up checks (the module constants above); an instance's
    #: are :meth:`capabilities_for` its parameters.
    capabilities: frozenset[str] = frozenset()
    #: parameters of the method's scenario in the shared DDP suite (``tests/ddp_equivalence.py``)
    #: where the defaults are too big for a tiny 2-task stream (e.g. a replay ratio).
    test_params: ClassVar[dict[str, Any]] = {}
    #: a new optimizer per task is required (e.g. parameters change between tasks).
    needs_fresh_optimizer: ClassVar[bool] = False
    #: parameter -> the authors' released code's value, set by ``compat: official`` (see
    #: :func:`compat_option`); empty for a method without that mode.
    official_values: ClassVar[dict[str, Any]] = {}

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.params_class()
        if dataclasses.is_dataclass(self.params):
            check_options(self.params, self.name)  # ranges and choices declared with each option
        self.capabilities = self.capabilities_for(self.params)

    @classmethod
    def capabilities_for(cls, params: Any) -> frozenset[str]:
        """The capabilities of this method with ``params`` (the one place they are derived);
        default: the class's :attr:`capabilities`, whatever the parameters."""
        return cls.capabilities

    def declares(self, capability: str) -> bool:
        return capability in self.capabilities

    def shared_components(self) -> dict[str, Any]:
        """Components other methods of the run may use, by kind (e.g. ``{"replay_buffer": ...}``)."""
        return {}

    # -- lifecycle hooks -------------------------------------------------------------------

    def on_setup(self, ctx: "RunContext") -> None:
        """Called once after the model is built (and before a resume restores state)."""

    def on_plan_phases(self, stream: "Stream") -> Optional[list[Phase]]:
        """Return the training phases, or None to keep one phase per task."""
        return None

    def on_phase_start(self, ctx: "RunContext") -> None:
        """Called before the batch plan and the optimizer of a phase are built."""

    def on_plan_batches(self, ctx: "RunContext", plan: BatchPlan) -> BatchPlan:
        """Return the phase's batch plan, extended if need be (default: unchanged)."""
        return plan

    def on_batch_start(self, ctx: "RunContext", batch: "MicroBatch") -> None:
        """A micro-batch is about to go through the model."""

    def on_loss(self, ctx: "RunContext", batch: "MicroBatch", outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        """Return the loss to back-propagate (default: unchanged)."""
        return loss

    def on_backward_end(self, ctx: "RunContext") -> None:
        """Gradients of a whole accumulation window are ready; clipping has not happened."""

    def on_step_end(self, ctx: "RunContext") -> None:
        """The optimizer stepped; gradients (clipped) are still in ``.grad``."""

    def on_phase_end(self, ctx: "RunContext") -> Optional[ExtraSteps]:
        """Training of the phase is over; evaluation comes next. May return extra steps to run now."""
        return None

    def on_log(self) -> dict[str, float]:
        """Scalars to log after each phase (e.g. fraction of rows a mask kept)."""
        return {}

    def on_run_files(self) -> dict[str, Any]:
        """JSON payloads for the run folder, by file name (rewritten after every phase)."""
        return {}

    def on_report(self, ctx: "RunContext") -> list[tuple[str, str]]:
        """Extra (title, markdown) sections for the run report (main process only: may write files)."""
        return []

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; may restructure the model (new adapters)."""
