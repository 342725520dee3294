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
from retain.methods.registry import register_method
from retain.methods.replay import Replay, ReplayParams
from retain.methods.common.teacher_store import TeacherLogits, kl_to_teacher, stored_answer_rows

if TYPE_CHECKING:
    from retain.data.collate import MicroBatch
    from retain.engine.context import RunContext


@dataclass
class DerParams(ReplayParams):
    schedule: str = option(
        "interleaved (separate replay micro-batches, where beta applies) | mixed (shuffled with the new data).",
        "interleaved",
    )
    alpha: float = option("Weight of the KL towards the stored logits of replayed examples.", 0.5)
    beta: float = option("Weight of the cross-entropy of replay micro-batches (1 = plain replay CE).", 1.0)
    temperature: float = option("Softmax temperature of the KL (the KL is scaled by T^2).", 1.0)


def der_replay_loss(ce: torch.Tensor, kl: torch.Tensor, alpha: float, beta: float) -> torch.Tensor:
    """The DER++ loss of replayed examples: ``beta * CE + alpha * KL``."""
    return beta * ce + alpha * kl


@register_method
class DER(Replay):
    name = "der"
    summary = "DER++: replay plus KL towards the logits stored when each replayed example's task ended."
    params_class = DerParams

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        if self.params.alpha < 0 or self.params.beta < 0:
            raise ConfigError(f"der.alpha, der.beta: must be non-negative, got {self.params.alpha}, {self.params.beta}")
        if self.params.temperature <= 0:
            raise ConfigError(f"der.temperature: must be positive, got {self.params.temperature}")
        if self.params.schedule == "mixed" and self.params.beta != 1.0:
            raise ConfigError(
                "der.beta: with schedule=mixed a batch's CE averages new and replayed examples, so beta "
                "cannot weight the replayed ones; keep beta=1 or use schedule=interleaved"
            )
        self.teacher = TeacherLogits()

    def on_task_end(self, ctx: "RunContext") -> None:
        super().on_task_end(ctx)
        for task_index in ctx.phase.task_indices:
            encoded = ctx.encoded(task_index, "train")
            self.teacher.record(ctx, [encoded[i] for i in self.buffer[task_index]])
        ctx.logger.info("der teacher logits: %d examples, %d bytes (bf16)", len(self.teacher), self.teacher.nbytes())

    def adjust_loss(self, ctx: "RunContext", batch: "MicroBatch", outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        rows = stored_answer_rows(ctx, batch, outputs.logits, self.teacher)
        if rows is None:
            return loss
        kl = kl_to_teacher(*rows, temperature=self.params.temperature)
        beta = self.params.beta if batch.source == "replay" else 1.0
        return der_replay_loss(loss, kl, self.params.alpha, beta)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "teacher": self.teacher.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.teacher.load_state_dict(state.get("teacher", {}))

    def log_values(self) -> dict[str, float]:
        return {**super().log_values(), "der_teacher_bytes": float(self.teacher.nbytes())}
