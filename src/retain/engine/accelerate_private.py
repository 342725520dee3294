"""The engine's only uses of Accelerate's private state, each in one small function.

Accelerate offers no public way to do these three things; keeping them here means an Accelerate
upgrade that changes one breaks in one place, named by its function. Checked on accelerate
:data:`CHECKED_ON` (``Accelerator._do_sync`` there: the step counter ``Accelerator.step`` and
``GradientState._set_sync_gradients``; ``AcceleratorState._reset_state``,
``GradientState._reset_state``). :mod:`retain.engine.sharding` keeps its own process-group
workarounds (``PartialState._shared_state``), which belong to the launch set-up.
"""

from __future__ import annotations

from typing import Any

#: the accelerate version these functions were checked against
CHECKED_ON = "1.16.0"


def reset_run_state() -> None:
    """Start a run from a clean ``AcceleratorState`` and ``GradientState``, keeping the
    distributed set-up (``PartialState``).

    Why: Accelerate keeps both as process-wide shared state, so a second run in the same process
    (a notebook, a benchmark, the tests) would otherwise inherit the first one's mixed precision,
    plugins and accumulation steps.
    """
    from accelerate.state import AcceleratorState, GradientState  # noqa: PLC0415

    AcceleratorState._reset_state(reset_partial_state=False)
    GradientState._reset_state()


def start_accumulation_window(accelerator: Any) -> None:
    """Make the next micro-batch the first of a gradient-accumulation window, with gradients
    synchronised until then.

    Why: a phase (and a method's extra steps) plans its own windows from its first micro-batch,
    but Accelerate's counter and sync flag carry over from whatever loop ran last (the previous
    phase's short last window, an evaluation); neither has a public setter.
    """
    accelerator.step = 0
    accelerator.gradient_state._set_sync_gradients(True)


def step_at_next_micro_batch(accelerator: Any) -> None:
    """Make the next ``accelerator.accumulate`` close its window (synchronise and step).

    Why: the last window of a plan steps even when it is short; Accelerate only closes a window
    when its counter reaches ``num_steps`` or at the end of a prepared dataloader, which the
    engine does not use (it plans its own batches).
    """
    accelerator.step = accelerator.gradient_state.num_steps - 1


__all__ = ["CHECKED_ON", "reset_run_state", "start_accumulation_window", "step_at_next_micro_batch"]
