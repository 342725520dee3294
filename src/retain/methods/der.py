"""DER++ (Buzzega et al., 2020): replay plus distillation towards the logits stored for each
replayed example when its task ended.

The loss of a replay micro-batch is ``beta * CE + alpha * KL(teacher || student)``; new
micro-batches keep their plain CE. The teacher is not a model kept in memory but the answer-position
logits the model produced on the buffer right after the example's task (bf16, see
:mod:`retain.methods.common.teacher_store`). DER++ in the paper regresses logits with an MSE; a KL on the
answer positions is the form that scales to language-model vocabularies and is what this method
computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from retain.config import option
from retain.errors import ConfigError
from retain.methods.base import CARRIES_KNOWLEDGE, DISTRIBUTED_MODES, OWNS_BATCH_SCHEDULE, Method
from retain.methods.common.batch_plan import BatchPlan
from retain.methods.common.replay_buffer import ReplayBuffer, ReplayParams
from retain.methods.common.teacher_store import TeacherLogits, kl_to_teacher, stored_answer_rows
from retain.methods.registry import register_method

if TYPE_CHECKING:
    from retain.data.collate import MicroBatch
    from retain.engine.context import RunContext


@dataclass
class DerParams(ReplayParams):
    schedule: str = option(
        "interleaved (separate replay micro-batches, where beta applies) | mixed (shuffled with the new data).",
        "interleaved", choices=("interleaved", "mixed"),
    )
    alpha: float = option("Weight of the KL towards the stored logits of replayed examples.", 0.5, low=0.0)
    beta: float = option("Weight of the cross-entropy of replay micro-batches (1 = plain replay CE).", 1.0, low=0.0)
    temperature: float = option("Softmax temperature of the KL (the KL is scaled by T^2).", 1.0, low=0.0, low_open=True)


def der_replay_loss(ce: torch.Tensor, kl: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """The DER++ loss of replayed examples: ``beta * CE + alpha * KL``."""
    return beta * ce + alpha * kl


@register_method
class DER(Method):
    name = "der"
    summary = "DER++: replay plus KL towards the logits stored when each replayed example's task ended."
    params_class = DerParams
    capabilities = frozenset({OWNS_BATCH_SCHEDULE, CARRIES_KNOWLEDGE})
    distributed = DISTRIBUTED_MODES
    test_params = {"ratio": 0.25}

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        if self.params.schedule == "mixed" and self.params.beta != 1.0:
            raise ConfigError(
                "der.beta: with schedule=mixed a batch's CE averages new and replayed examples, so beta "
                "cannot weight the replayed ones; keep beta=1 or use schedule=interleaved"
            )
        self.buffer = ReplayBuffer(self.params)
        self.teacher = TeacherLogits()

    def shared_components(self) -> dict[str, Any]:
        return {"replay_buffer": self.buffer}

    def on_setup(self, ctx: "RunContext") -> None:
        self.buffer.setup(ctx)

    def on_plan_batches(self, ctx: "RunContext", plan: BatchPlan) -> BatchPlan:
        return self.buffer.extend_plan(ctx, plan)

    def on_phase_end(self, ctx: "RunContext") -> None:
        self.buffer.fill(ctx)
        for task_index in ctx.state.phase.task_indices:
            self.teacher.record(ctx, self.buffer.task_items(ctx, task_index), name="der: stored logits")
        ctx.logger.info("der teacher logits: %d examples, %d bytes (bf16)", len(self.teacher), self.teacher.nbytes())

    def on_loss(self, ctx: "RunContext", batch: "MicroBatch", outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        rows = stored_answer_rows(ctx, batch, outputs.logits, self.teacher)
        if rows is None:
            return loss
        kl = kl_to_teacher(*rows, temperature=self.params.temperature)
        beta = self.params.beta if batch.source == "replay" else 1.0
        return der_replay_loss(loss, kl, self.params.alpha, beta)

    def state_dict(self) -> dict[str, Any]:
        return {**self.buffer.state_dict(), "teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.buffer.load_state_dict(state)
        self.teacher.load_state_dict(state.get("teacher", {}))

    def on_log(self) -> dict[str, float]:
        return {"replay_buffer": float(len(self.buffer)), "der_teacher_bytes": float(self.teacher.nbytes())}
