"""SEEKR's logit distillation: which logit rows are compared with the teacher, and by what loss.

Two independent choices, each with retain's default and the authors' released code's value:

- ``positions``: ``shifted`` compares, for a causal LM, the rows that *predict* the answer tokens
  (position t predicts token t + 1, as the task loss does); ``official`` takes the rows *at* the
  answer tokens' own positions (``logits[labels != -100]``, no shift), as the released code does,
  so each row is compared with the teacher's row one token later than the one it is trained on.
  Seq2seq and classifier models have no shift: both values give the same rows there.
- ``loss``: ``kl`` is KL(teacher || student); ``soft_ce`` is the cross-entropy of the student
  against the teacher's softmax (the released code's ``CrossEntropyLoss`` on soft targets). They
  differ by the teacher's entropy, a constant of the student: the same gradient, a different
  loss value (and logged term). Hence two parameters: only ``positions`` changes training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

import torch

from retain.data.collate import IGNORE_INDEX, EncodedExample, MicroBatch
from retain.engine.collective import merge_dicts
from retain.methods.common.teacher_store import TeacherLogits, kl_to_teacher, stored_answer_rows
from retain.models.kinds import eval_mode, model_kind

if TYPE_CHECKING:
    from retain.engine.context import RunContext

LOGIT_POSITIONS = ("shifted", "official")
LOGIT_LOSSES = ("kl", "soft_ce")


def answer_rows(kind: str, batch: MicroBatch, logits: torch.Tensor, positions: str = "shifted") -> list[torch.Tensor]:
    """Per example, the logit rows distilled: shifted (predicting the answer) or at the answer tokens."""
    if positions == "official" and kind == "causal":
        labels = batch.inputs["labels"]
        return [logits[i][labels[i] != IGNORE_INDEX] for i in range(logits.shape[0])]
    return model_kind(kind).answer_rows(batch, logits)


def student_teacher_rows(
    ctx: "RunContext", batch: MicroBatch, logits: torch.Tensor, store: TeacherLogits, positions: str = "shifted"
) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(student rows, teacher rows) of the batch's stored examples, or None if it has none."""
    if positions == "shifted" or ctx.kind != "causal":
        return stored_answer_rows(ctx, batch, logits, store)
    teacher, present = store.gather(batch, logits.device)
    if not bool(present.any()):
        return None
    rows = answer_rows(ctx.kind, batch, logits, positions)
    student = torch.cat([r for r, keep in zip(rows, present.tolist()) if keep])
    if student.shape != teacher.shape:
        raise RuntimeError(
            f"stored teacher rows {tuple(teacher.shape)} do not match the student's {tuple(student.shape)}: "
            "the examples were encoded differently when the teacher logits were stored"
        )
    return student, teacher


def soft_target_ce(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -sum_v softmax(teacher)_v log softmax(student)_v, in fp32."""
    if student.numel() == 0:
        return student.sum() * 0.0
    targets = torch.softmax(teacher.float(), dim=-1)
    return -(targets * torch.log_softmax(student.float(), dim=-1)).sum(-1).mean()


def logit_distillation_loss(student: torch.Tensor, teacher: torch.Tensor, loss: str = "kl") -> torch.Tensor:
    """The logit term of a replay batch: ``kl`` or ``soft_ce`` (same gradient, see the module)."""
    if loss not in LOGIT_LOSSES:
        raise ValueError(f"unknown logit loss {loss!r} (choose from {LOGIT_LOSSES})")
    return soft_target_ce(student, teacher) if loss == "soft_ce" else kl_to_teacher(student, teacher)


@torch.no_grad()
def record_teacher(
    ctx: "RunContext", store: TeacherLogits, items: list[EncodedExample], batch_size: int, positions: str, name: str
) -> None:
    """Store the teacher rows of ``items`` at ``positions`` (the store's own pass for ``shifted``)."""
    if positions == "shifted" or ctx.kind != "causal":
        store.record(ctx, items, batch_size, name=name)
        return
    model = ctx.pass_model()
    recorded: dict[str, torch.Tensor] = {}
    with eval_mode(model):
        for batch in ctx.iterate_batches(items, batch_size=batch_size, shard=True, progress=name):
            outputs = ctx.forward(batch, model=model)
            for key, rows in zip(batch.keys, answer_rows(ctx.kind, batch, outputs.logits, positions)):
                recorded[key] = rows.detach().to("cpu", store.dtype).clone()
    store.logits.update(merge_dicts(ctx.accelerator, recorded))
