"""Experience replay: a buffer of earlier tasks' training examples mixed into the new task.

The method is the buffer component (:mod:`retain.methods.common.replay_buffer`) and nothing else:
it fills the buffer when a phase ends and extends each phase's batch plan with it (``mixed`` or
``interleaved``, see the component).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from retain.methods.base import CARRIES_KNOWLEDGE, DISTRIBUTED_MODES, OWNS_BATCH_SCHEDULE, Method
from retain.methods.common.batch_plan import BatchPlan, interleave_count
from retain.methods.common.replay_buffer import ReplayBuffer, ReplayParams, sample_buffer
from retain.methods.registry import register_method

if TYPE_CHECKING:
    from retain.engine.context import RunContext

__all__ = ["Replay", "ReplayParams", "interleave_count", "sample_buffer"]


@register_method
class Replay(Method):
    name = "replay"
    summary = "Experience replay: a seeded buffer of earlier tasks' examples mixed into training."
    params_class = ReplayParams
    capabilities = frozenset({OWNS_BATCH_SCHEDULE, CARRIES_KNOWLEDGE})
    distributed = DISTRIBUTED_MODES
    test_params = {"ratio": 0.25}

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.buffer = ReplayBuffer(self.params)

    def shared_components(self) -> dict[str, Any]:
        return {"replay_buffer": self.buffer}

    def on_setup(self, ctx: "RunContext") -> None:
        self.buffer.setup(ctx)

    def on_plan_batches(self, ctx: "RunContext", plan: BatchPlan) -> BatchPlan:
        return self.buffer.extend_plan(ctx, plan)

    def on_phase_end(self, ctx: "RunContext") -> None:
        self.buffer.fill(ctx)

    def state_dict(self) -> dict[str, Any]:
        return self.buffer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state)

    def on_log(self) -> dict[str, float]:
        return {"replay_buffer": float(len(self.buffer))}
