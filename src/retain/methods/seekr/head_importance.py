"""Which attention heads SEEKR distils: importance per head and the hierarchical budget.

Importance of head h in layer l after task k multiplies two measurements on task k's replay
samples (He et al., 2024, Sec. 3.2):

- task sensitivity ``S^k[l, h]``: how much the task loss depends on the head's map, the mean of
  ``(dL/dA)^2`` over the map's real entries (the gradient is taken with ``torch.autograd.grad`` with
  respect to the post-softmax probabilities, so no parameter ``.grad`` is touched), averaged over
  samples and normalised to sum to 1 within each layer;
- forgettability ``F^k[l, h]``: how much the map moved while learning task k, the mean squared
  difference between the maps before and after the task over the real (unpadded) entries.

Across tasks they are combined either as the sum of per-task products (``sum_of_products``, the
default) or as the product of the sums (``product_of_sums``). The budget then keeps the top layers
by total importance and, among those layers only, the top heads of the whole model.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch

from retain.data.collate import MicroBatch
from retain.models.kinds import model_kind

COMBINATIONS = ("sum_of_products", "product_of_sums")
#: Which map entries the means of sensitivity and forgettability are over: ``real_tokens``, the
#: example's own tokens; ``padded_to_8``, the map of the task's buffer padded to its longest
#: example rounded up to a multiple of 8 (the released code's one padded batch), pads counting 0.
IMPORTANCE_PADDINGS = ("real_tokens", "padded_to_8")
SELECTIONS = ("importance", "sensitivity", "forgettability", "random")


# -- per-sample measurements ---------------------------------------------------------------


def head_sensitivity(grads: torch.Tensor) -> torch.Tensor:
    """Mean over the map of the squared gradient, per head: [heads, queries, keys] -> [heads].

    ``grads`` holds only real (non-pad) query rows and key columns, so padding never counts.
    """
    return grads.float().pow(2).flatten(1).mean(dim=1)


def head_forgettability(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Mean squared change of each head's map: [heads, rows, keys] twice -> [heads] (unpadded maps)."""
    return (after.float() - before.float()).pow(2).flatten(1).mean(dim=1)


def padded_length(lengths: list[int], multiple: int = 8) -> int:
    """The longest of ``lengths`` rounded up to a multiple of ``multiple`` (at least ``multiple``)."""
    longest = max(lengths, default=0)
    return max(multiple, -(-longest // multiple) * multiple)


def padding_scale(real_entries: int, padded_entries: int) -> float:
    """Factor turning a mean over ``real_entries`` into one over ``padded_entries`` where pads count 0.

    The released code's statistics average over the padded map: its padded key columns hold zero
    attention in both maps (forgettability), and the mean divides by every entry.
    """
    return real_entries / padded_entries if padded_entries else 1.0


def normalise_within_layer(scores: torch.Tensor) -> torch.Tensor:
    """Rows of ``scores`` [layers, heads] scaled to sum to 1; an all-zero row stays zero."""
    totals = scores.sum(dim=1, keepdim=True)
    return torch.where(totals > 0, scores / totals.clamp_min(torch.finfo(scores.dtype).tiny), torch.zeros_like(scores))


def per_example_loss(kind: str, batch: MicroBatch, logits: torch.Tensor) -> torch.Tensor:
    """The task loss of each example [batch] (token mean for generative kinds).

    Summed over the batch, it gives every example's map exactly the gradient of its own loss,
    whatever the batch size, which a batch-mean loss would scale by 1/B.
    """
    return model_kind(kind).per_example_loss(batch, logits)


# -- accumulation across tasks -------------------------------------------------------------


class ImportanceTracker:
    """Running sums of per-task sensitivity, forgettability and their product, [layers, heads]."""

    def __init__(self) -> None:
        self.sensitivity: Optional[torch.Tensor] = None
        self.forgettability: Optional[torch.Tensor] = None
        self.product: Optional[torch.Tensor] = None
        self.tasks = 0

    def add_task(self, sensitivity: torch.Tensor, forgettability: torch.Tensor) -> None:
        """Add one task's measurements (sensitivity already normalised within each layer)."""
        s, f = sensitivity.float().cpu(), forgettability.float().cpu()
        if self.sensitivity is None:
            self.sensitivity, self.forgettability, self.product = torch.zeros_like(s), torch.zeros_like(f), torch.zeros_like(s)
        assert self.forgettability is not None and self.product is not None
        self.sensitivity += s
        self.forgettability += f
        self.product += s * f
        self.tasks += 1

    def scores(self, selection: str, combine: str) -> torch.Tensor:
        """The table the budget ranks by (``random`` is drawn by the caller)."""
        if self.sensitivity is None or self.forgettability is None or self.product is None:
            raise RuntimeError("no task measured yet")
        if selection == "sensitivity":
            return self.sensitivity.clone()
        if selection == "forgettability":
            return self.forgettability.clone()
        if combine == "product_of_sums":
            return self.sensitivity * self.forgettability
        return self.product.clone()

    def state_dict(self) -> dict[str, Any]:
        return {
            "sensitivity": self.sensitivity, "forgettability": self.forgettability,
            "product": self.product, "tasks": self.tasks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sensitivity = state.get("sensitivity")
        self.forgettability = state.get("forgettability")
        self.product = state.get("product")
        self.tasks = int(state.get("tasks", 0))


# -- the budget ----------------------------------------------------------------------------


def _half_up(value: float) -> int:
    return int(math.floor(value + 0.5))


def budget_counts(
    num_layers: int,
    num_heads: int,
    layer_fraction: float,
    head_fraction: float,
    layers: Optional[int] = None,
    heads: Optional[int] = None,
) -> tuple[int, int]:
    """(layers kept, heads kept): fractions of the model rounded half up, or the absolute overrides.

    Heads are a fraction of all heads of the model (the paper's 128 of 1024 is 0.125), clamped to
    what the kept layers hold.
    """
    kept_layers = layers if layers is not None else max(1, _half_up(layer_fraction * num_layers))
    kept_layers = min(kept_layers, num_layers)
    kept_heads = heads if heads is not None else max(1, _half_up(head_fraction * num_layers * num_heads))
    return kept_layers, min(kept_heads, kept_layers * num_heads)


def select_heads(scores: torch.Tensor, kept_layers: int, kept_heads: int) -> dict[int, list[int]]:
    """Hierarchical selection over a [layers, heads] table: {layer position: sorted head indices}.

    First the ``kept_layers`` layers with the largest total score, then the ``kept_heads`` heads
    with the largest score among those layers, compared across layers. Ties go to the lower index,
    so a selection is reproducible.
    """
    num_layers, num_heads = scores.shape
    totals = scores.sum(dim=1).tolist()
    layers = sorted(range(num_layers), key=lambda layer: (-totals[layer], layer))[:kept_layers]
    values = scores.tolist()
    candidates = [(layer, head) for layer in layers for head in range(num_heads)]
    chosen = sorted(candidates, key=lambda lh: (-values[lh[0]][lh[1]], lh[0], lh[1]))[:kept_heads]
    selection: dict[int, list[int]] = {}
    for layer, head in chosen:
        selection.setdefault(layer, []).append(head)
    return {layer: sorted(heads) for layer, heads in sorted(selection.items())}


def random_scores(num_layers: int, num_heads: int, seed: int) -> torch.Tensor:
    """A seeded random table: the ``random`` selection of the paper's ablation, same budget."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(num_layers, num_heads, generator=generator)
