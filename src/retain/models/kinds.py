"""Model kinds: how to recognise them from a Hugging Face config, and what each does differently."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Optional

import torch

#: label of positions that carry no loss (prompt tokens, padding); the value HF losses ignore
IGNORE_INDEX = -100

MODEL_KINDS = ("causal", "seq2seq", "classifier")

#: Encoder-only architectures: used as sequence classifiers over the stream's label set.
ENCODER_ONLY_TYPES = {
    "bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert",
    "xlm-roberta", "mpnet", "camembert", "modernbert",
}


def infer_kind(hf_config: Any) -> str:
    """causal / seq2seq / classifier from a transformers config."""
    if getattr(hf_config, "is_encoder_decoder", False):
        return "seq2seq"
    architectures = getattr(hf_config, "architectures", None) or []
    if any(name.endswith("ForSequenceClassification") for name in architectures):
        return "classifier"
    if getattr(hf_config, "model_type", "") in ENCODER_ONLY_TYPES:
        return "classifier"
    return "causal"


class ModelKind:
    """What differs between causal LMs, seq2seq LMs and sequence classifiers, written once each.

    The engine and the methods ask the kind (``model_kind(ctx.kind)``) instead of comparing its
    name: which inputs the forward takes, the task loss, which logit rows predict the answer
    (the next-token shift of a causal LM lives only in :meth:`aligned`).
    """

    name: str = ""
    #: one row of class logits per example (a classification head), not token logits
    classes: bool = False
    #: separate encoder and decoder (decoder cross-attention, tied head of T5)
    encoder_decoder: bool = False

    def inputs(self, batch: Any) -> dict[str, Any]:
        """The forward's keyword inputs (labels included, so HF computes the token loss)."""
        return dict(batch.inputs)

    def loss(self, batch: Any, outputs: Any) -> torch.Tensor:
        """The task loss of a batch: HF's token cross-entropy."""
        return outputs.loss

    def aligned(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token logits and the labels they predict, position by position."""
        return logits, labels

    def answer_rows(self, batch: Any, logits: torch.Tensor) -> list[torch.Tensor]:
        """Per example, the logit rows that predict its answer tokens."""
        logits, labels = self.aligned(logits, batch.inputs["labels"])
        return [logits[i][labels[i] != IGNORE_INDEX] for i in range(logits.shape[0])]

    def per_example_loss(self, batch: Any, logits: torch.Tensor) -> torch.Tensor:
        """The task loss of each example [batch] (token mean over its answer tokens)."""
        logits, labels = self.aligned(logits, batch.inputs["labels"])
        token_loss = torch.nn.functional.cross_entropy(
            logits.float().transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none"
        )
        counts = (labels != IGNORE_INDEX).sum(dim=1).clamp_min(1)
        return token_loss.sum(dim=1) / counts


class CausalKind(ModelKind):
    name = "causal"

    def aligned(self, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The logit at position t predicts token t+1."""
        return logits[:, :-1], labels[:, 1:]


class Seq2SeqKind(ModelKind):
    name = "seq2seq"
    encoder_decoder = True


class ClassifierKind(ModelKind):
    name = "classifier"
    classes = True

    def inputs(self, batch: Any) -> dict[str, Any]:
        inputs = dict(batch.inputs)
        inputs.pop("labels")  # the loss is ours: over the allowed classes only
        return inputs

    def loss(self, batch: Any, outputs: Any) -> torch.Tensor:
        """Cross-entropy over each example's allowed classes (all of them without a label mask)."""
        return torch.nn.functional.cross_entropy(mask_disallowed(outputs.logits.float(), batch.label_mask), batch.inputs["labels"])

    def answer_rows(self, batch: Any, logits: torch.Tensor) -> list[torch.Tensor]:
        return [logits[i : i + 1] for i in range(logits.shape[0])]

    def per_example_loss(self, batch: Any, logits: torch.Tensor) -> torch.Tensor:
        logits = mask_disallowed(logits.float(), batch.label_mask)
        return torch.nn.functional.cross_entropy(logits, batch.inputs["labels"], reduction="none")


_KINDS: dict[str, ModelKind] = {k.name: k for k in (CausalKind(), Seq2SeqKind(), ClassifierKind())}


def model_kind(name: str) -> ModelKind:
    """The kind object of a kind name (``causal`` / ``seq2seq`` / ``classifier``)."""
    return _KINDS[name]


def mask_disallowed(logits: torch.Tensor, allowed: Optional[torch.Tensor], fill: Optional[float] = None) -> torch.Tensor:
    """``logits`` with the classes ``allowed`` excludes set to ``fill`` (default: the dtype's minimum).

    ``allowed`` is a bool mask broadcastable to ``logits``; None leaves them unchanged.
    """
    if allowed is None:
        return logits
    return logits.masked_fill(~allowed, torch.finfo(logits.dtype).min if fill is None else fill)


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """The model in eval mode (no dropout) for the block, then back in the mode it was in."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)
