"""Multi-task training: the union of all tasks in one phase, the usual upper bound."""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

from retain.methods.base import DISTRIBUTED_MODES, OWNS_PHASES, Method, Phase
from retain.methods.registry import register_method

if TYPE_CHECKING:
    from retain.data.types import Stream


@register_method
class MultiTask(Method):
    name = "mtl"
    summary = "Multi-task: train on the union of all tasks at once (one row in the matrix)."
    capabilities = frozenset({OWNS_PHASES})
    distributed = DISTRIBUTED_MODES

    def on_plan_phases(self, stream: "Stream") -> Optional[list[Phase]]:
        return [Phase(name="all tasks", task_indices=list(range(len(stream.tasks))))]
