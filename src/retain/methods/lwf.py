"""Learning without Forgetting (Li & Hoiem, 2016): stay close to the previous model's outputs on
the new task's data.

The previous model's answer-position logits on the new task's training examples are computed once,
when the task starts (before any update), and kept in bf16; no second model lives in memory during
training. Each new micro-batch then adds ``lam * KL(previous || current)`` at temperature ``T``.
The first task has no previous model to stay close to, so it trains plainly.

Classifier kind: LwF keeps the *old tasks'* outputs, as the paper keeps its old heads' outputs, so
the KL runs over the classes of the earlier tasks (of the shared head), not over the new task's
own labels, whose old-model logits were never trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch

from retain.config import option
from retain.methods.base import CARRIES_KNOWLEDGE, DISTRIBUTED_MODES, Method
from retain.methods.registry import register_method
from retain.models.kinds import model_kind
from retain.methods.common.teacher_store import TeacherLogits, kl_to_teacher, stored_answer_rows

if TYPE_CHECKING:
    from retain.data.collate import MicroBatch
    from retain.engine.context import RunContext


@dataclass
class LwfParams:
    lam: float = option("Weight lambda of the KL towards the previous model's outputs.", 1.0, low=0.0)
    temperature: float = option(
        "Softmax temperature T of the KL (scaled by T^2, as in knowledge distillation).", 2.0, low=0.0, low_open=True
    )


def earlier_task_classes(ctx: "RunContext") -> torch.Tensor:
    """Bool vector over the classifier head: the labels of the tasks trained before this phase."""
    first = min(ctx.state.phase.task_indices)
    label_ids = ctx.encoder.label_ids
    mask = torch.zeros(len(label_ids), dtype=torch.bool)
    for task in ctx.stream.tasks[:first]:
        for label in task.labels or []:
            mask[label_ids[label]] = True
    return mask


@register_method
class LwF(Method):
    name = "lwf"
    summary = "Learning without Forgetting: KL to the previous model's outputs on the new task's data."
    params_class = LwfParams
    capabilities = frozenset({CARRIES_KNOWLEDGE})
    distributed = DISTRIBUTED_MODES

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.previous = TeacherLogits()
        self.old_classes: Optional[torch.Tensor] = None

    def on_phase_start(self, ctx: "RunContext") -> None:
        # Only this task's outputs are needed: drop the previous task's before storing new ones.
        self.previous = TeacherLogits()
        if ctx.state.phase_index == 0:
            return
        self.previous.record(ctx, ctx.phase_train_examples(), name="lwf: teacher outputs")
        self.old_classes = earlier_task_classes(ctx) if model_kind(ctx.kind).classes else None
        ctx.logger.info("lwf: previous model's logits on %d examples, %d bytes (bf16)", len(self.previous), self.previous.nbytes())

    def on_loss(self, ctx: "RunContext", batch: "MicroBatch", outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        if not len(self.previous):
            return loss
        rows = stored_answer_rows(ctx, batch, outputs.logits, self.previous, classes=self.old_classes)
        if rows is None:  # e.g. a replay micro-batch of an earlier task
            return loss
        return loss + self.params.lam * kl_to_teacher(*rows, temperature=self.params.temperature)

    def on_phase_end(self, ctx: "RunContext") -> None:
        self.previous = TeacherLogits()  # recomputed at the next task start; nothing to checkpoint
