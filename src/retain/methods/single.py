"""Single-task fine-tuning: a fresh model per task, the reference for forward transfer.

Every task starts from the initial weights (kept once, on CPU, in ``ctx.initial_state``), so row
``i`` of the matrix holds a model that has seen task ``i`` only. Its diagonal ``a[i][i]`` is the
single-task score ``s[i]`` of FWT relative to single-task: point another run's
``eval.single_task_reference`` at this run folder. Off-diagonal cells score that single-task model
on the other tasks; BWT and forgetting of this run measure nothing continual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from retain.methods.base import Method
from retain.methods.registry import register_method

if TYPE_CHECKING:
    from retain.engine.context import RunContext

_CARRIES_KNOWLEDGE = "carries knowledge from earlier tasks, while single starts every task from the initial weights"


@register_method
class Single(Method):
    name = "single"
    summary = "A fresh model per task (reset to the initial weights): single-task reference rows for FWT."
    needs_fresh_optimizer = True  # Adam moments of the previous task would leak into the fresh model
    conflicts = {
        "mtl": "mtl trains one model on all tasks at once, single one model per task; run them separately",
        "replay": f"replay {_CARRIES_KNOWLEDGE}",
        "der": f"der {_CARRIES_KNOWLEDGE}",
        "lwf": f"lwf {_CARRIES_KNOWLEDGE}",
        "ewc": f"ewc {_CARRIES_KNOWLEDGE}",
        "olora": f"olora {_CARRIES_KNOWLEDGE}",
    }

    def setup(self, ctx: "RunContext") -> None:
        # setup runs before a resume loads the checkpoint, so these are the initial weights.
        if ctx.initial_state is None:
            ctx.initial_state = {
                name: tensor.detach().to("cpu", copy=True)
                for name, tensor in ctx.unwrapped_model().state_dict().items()
            }

    @torch.no_grad()
    def on_task_start(self, ctx: "RunContext") -> None:
        assert ctx.initial_state is not None
        ctx.unwrapped_model().load_state_dict(ctx.initial_state)
        ctx.logger.info("single: weights reset to the initial model for %s", ctx.phase.name)
