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

from retain.engine.sharding import load_full_weights

from retain.methods.base import DISTRIBUTED_MODES, RESETS_MODEL, Method
from retain.methods.registry import register_method

if TYPE_CHECKING:
    from retain.engine.context import RunContext


@register_method
class Single(Method):
    name = "single"
    summary = "A fresh model per task (reset to the initial weights): single-task reference rows for FWT."
    needs_fresh_optimizer = True  # Adam moments of the previous task would leak into the fresh model
    #: refused with every method that carries knowledge or owns the phases (see the registry)
    capabilities = frozenset({RESETS_MODEL})
    distributed = DISTRIBUTED_MODES

    def on_setup(self, ctx: "RunContext") -> None:
        # setup runs before a resume loads the checkpoint, so these are the initial weights.
        if ctx.initial_state is None:
            ctx.initial_state = {
                name: tensor.detach().to("cpu", copy=True)
                for name, tensor in ctx.unwrapped_model().state_dict().items()
            }

    @torch.no_grad()
    def on_phase_start(self, ctx: "RunContext") -> None:
        assert ctx.initial_state is not None
        load_full_weights(ctx.unwrapped_model(), ctx.initial_state)  # sharded or not
        ctx.logger.info("single: weights reset to the initial model for %s", ctx.state.phase.name)
