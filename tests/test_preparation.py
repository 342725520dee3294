"""Per-task preparation: finished optimizers are released, and a short last window still steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import retain
from retain.engine.preparation import optimizer_state_bytes, release
from retain.engine.runner import ContinualRunner
from tests.conftest import tiny_config


def test_finished_optimizers_are_released_and_the_short_last_window_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[tuple[int, int]] = []
    during: list[int] = []
    checkpoint = ContinualRunner._checkpoint
    prepare_phase = ContinualRunner._prepare_phase

    def measuring(self: Any, ctx: Any, *args: Any) -> None:
        checkpoint(self, ctx, *args)
        held.append((len(ctx.accelerator._optimizers), optimizer_state_bytes(ctx.accelerator._optimizers)))

    def preparing(self: Any, ctx: Any, steps: int) -> None:
        prepare_phase(self, ctx, steps)
        during.append(len(ctx.accelerator._optimizers))

    monkeypatch.setattr(ContinualRunner, "_checkpoint", measuring)
    monkeypatch.setattr(ContinualRunner, "_prepare_phase", preparing)
    config = tiny_config(tmp_path, stream={"demo_train_size": 32, "demo_eval_size": 4}, train={"grad_accum": 3})
    result = retain.run(config, quiet=True)
    assert during == [1, 1]  # each task's optimizer is the only one Accelerate holds
    assert held[1:] == [(0, 0)] * 2  # and none is left once the task is done (checkpoint after each)
    log = (result.run_dir / "run.log").read_text()
    # 32 examples / batch 8 = 4 micro-batches; grad_accum 3 gives a full window and a short one
    assert "4 micro-batches, 2 steps" in log


def test_release_keeps_what_it_was_not_given() -> None:
    class Holder:
        def __init__(self) -> None:
            self._optimizers, self._models, self._schedulers = ["a", "b"], ["m"], []

    holder = Holder()
    release(holder, "a", None)
    assert holder._optimizers == ["b"] and holder._models == ["m"]
