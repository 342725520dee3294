"""The three uses of Accelerate's private state do what the engine relies on, on the installed
accelerate (a version that changes one fails here, by name, rather than deep inside a run)."""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState, PartialState

from retain.engine.accelerate_private import reset_run_state, start_accumulation_window, step_at_next_micro_batch


def _syncs(accelerator: Accelerator, model: torch.nn.Module, micro_batches: int) -> list[bool]:
    flags = []
    for _ in range(micro_batches):
        with accelerator.accumulate(model):
            flags.append(accelerator.sync_gradients)
    return flags


def test_windows_start_and_close_where_the_engine_says() -> None:
    reset_run_state()
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=3)
    model = torch.nn.Linear(2, 2)
    assert _syncs(accelerator, model, 2) == [False, False]  # a window left open
    start_accumulation_window(accelerator)
    assert accelerator.sync_gradients
    assert _syncs(accelerator, model, 3) == [False, False, True]  # a fresh window of 3
    assert _syncs(accelerator, model, 1) == [False]
    step_at_next_micro_batch(accelerator)
    assert _syncs(accelerator, model, 1) == [True]  # a short last window still steps


def test_a_reset_forgets_the_last_run_but_keeps_the_process_group() -> None:
    Accelerator(cpu=True, gradient_accumulation_steps=4)
    partial = dict(PartialState._shared_state)
    reset_run_state()
    assert AcceleratorState._shared_state == {} and GradientState._shared_state == {}
    assert PartialState._shared_state == partial
    assert Accelerator(cpu=True).gradient_state.num_steps == 1
