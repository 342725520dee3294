"""Stored teacher signals for replayed examples: answer-position logits, kept in bf16.

No copy of an old model is kept in memory: when a task ends, the methods that distil (DER++,
SEEKR) run the model once over that task's buffer and store what the teacher said at the answer
positions only (one row per target token; one row per example for the classifier), unpadded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from retain.data.collate import EncodedExample, MicroBatch
from retain.engine.collective import merge_dicts
from retain.models.kinds import eval_mode, mask_disallowed, model_kind

if TYPE_CHECKING:
    from retain.engine.context import RunContext


class TeacherLogits:
    """example key -> answer-position logits [n_answer_positions, vocab or classes] (bf16)."""

    def __init__(self, dtype: torch.dtype = torch.bfloat16) -> None:
        self.dtype = dtype
        self.logits: dict[str, torch.Tensor] = {}

    def __contains__(self, key: str) -> bool:
        return key in self.logits

    def __len__(self) -> int:
        return len(self.logits)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.logits.values())

    @torch.no_grad()
    def record(
        self, ctx: "RunContext", items: list[EncodedExample], batch_size: Optional[int] = None, name: str = "teacher outputs"
    ) -> None:
        """Run the current model (eval mode) over ``items`` and store their answer logits.

        Each process runs its share of the batches; the rows are then gathered, so every process
        holds the teacher of every example (a replay batch may land on any of them).
        ``name``: the pass's name on its progress bar and log line.
        """
        model = ctx.pass_model()
        recorded: dict[str, torch.Tensor] = {}
        with eval_mode(model):
            for batch in ctx.iterate_batches(
                items, batch_size=batch_size or ctx.config.eval.batch_size, shard=True, progress=name
            ):
                outputs = ctx.forward(batch, model=model)
                for key, rows in zip(batch.keys, split_answer_rows(ctx, batch, outputs.logits)):
                    recorded[key] = rows.detach().to("cpu", self.dtype).clone()
        self.logits.update(merge_dicts(ctx.accelerator, recorded))

    def gather(self, batch: MicroBatch, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher rows for the batch's stored examples, in batch order, and a per-example mask.

        Returns (teacher [N, V] fp32 for the stored examples' answer positions, has_teacher [B]).
        """
        present = torch.tensor([k in self.logits for k in batch.keys], dtype=torch.bool)
        rows = [self.logits[k] for k in batch.keys if k in self.logits]
        if not rows:
            return torch.empty(0, device=device), present.to(device)
        return torch.cat(rows).to(device, torch.float32), present.to(device)

    def state_dict(self) -> dict[str, Any]:
        return {"logits": dict(self.logits)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.logits = dict(state.get("logits", {}))


def split_answer_rows(ctx: "RunContext", batch: MicroBatch, logits: torch.Tensor) -> list[torch.Tensor]:
    """Per example, the logit rows that predict its answer tokens (shifted for causal LMs)."""
    return model_kind(ctx.kind).answer_rows(batch, logits)


def answer_rows_for(ctx: "RunContext", batch: MicroBatch, logits: torch.Tensor, select: torch.Tensor) -> torch.Tensor:
    """Concatenated answer rows of the examples where ``select`` is true, in batch order."""
    rows = split_answer_rows(ctx, batch, logits)
    chosen = [r for r, keep in zip(rows, select.tolist()) if keep]
    return torch.cat(chosen) if chosen else logits.new_zeros((0, logits.shape[-1]))


def kl_to_teacher(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean over rows of KL(teacher || student) of the softmax distributions, in fp32.

    Rows are answer positions; the teacher is a fixed target (no gradient).
    """
    if student.numel() == 0:
        return student.sum() * 0.0
    log_p_student = torch.log_softmax(student.float() / temperature, dim=-1)
    log_p_teacher = torch.log_softmax(teacher.float() / temperature, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)
    return kl.mean() * temperature**2


#: Stand-in logit for classes a row may not predict: far below any real logit, yet finite, so that
#: log-softmax differences stay finite and the masked classes contribute exactly 0 to a KL.
DISALLOWED_LOGIT = -1e9


def restrict_to_allowed(logits: torch.Tensor, allowed: Optional[torch.Tensor]) -> torch.Tensor:
    """Classifier rows limited to their allowed classes (``label_space: task``); None = all classes.

    Distilling over classes a task never scores would spend the distillation on logits the
    evaluation ignores, so student and teacher rows are both restricted before the KL.
    """
    return logits if allowed is None else mask_disallowed(logits.float(), allowed, DISALLOWED_LOGIT)


def stored_answer_rows(
    ctx: "RunContext",
    batch: MicroBatch,
    logits: torch.Tensor,
    store: TeacherLogits,
    classes: Optional[torch.Tensor] = None,
) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
    """(student rows, teacher rows) for the batch's examples that ``store`` holds, or None.

    Rows are the answer positions (shifted for causal LMs), in batch order on both sides. Classifier
    rows are restricted to ``classes`` (a bool vector over the head's classes) when given, else to
    each example's allowed labels (``batch.label_mask``; all classes under ``label_space: union``).
    """
    teacher, present = store.gather(batch, logits.device)
    if not bool(present.any()):
        return None
    student = answer_rows_for(ctx, batch, logits, present)
    allowed: Optional[torch.Tensor] = None
    if model_kind(ctx.kind).classes and classes is not None:
        allowed = classes.to(logits.device).expand(student.shape[0], -1)
    elif model_kind(ctx.kind).classes and batch.label_mask is not None:
        allowed = batch.label_mask[present]
    if allowed is not None:
        student, teacher = restrict_to_allowed(student, allowed), restrict_to_allowed(teacher, allowed)
    if student.shape != teacher.shape:
        raise RuntimeError(
            f"stored teacher rows {tuple(teacher.shape)} do not match the student's {tuple(student.shape)}: "
            "the examples were encoded differently when the teacher logits were stored"
        )
    return student, teacher
