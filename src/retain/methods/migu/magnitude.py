"""Output-magnitude statistics of linear layers and the row masks built from them (used by MIGU).

Three jobs, kept apart so each can be tested on tiny tensors:

- :func:`find_targets`: which layers are measured and which gradient rows each one masks
  (plain ``nn.Linear`` / GPT-2 ``Conv1D`` layers, and PEFT LoRA layers, which are *not*
  ``nn.Linear`` subclasses and so are targeted explicitly: the wrapper's whole output masks the
  rows of ``lora_B``, ``lora_A``'s own r-dim output masks the rows of ``lora_A``; the experts of
  fused mixture-of-experts tensors are targets of :mod:`retain.methods.migu.experts`);
- :class:`TokenRows`: which rows of a layer's flattened output are real tokens of the micro-batch
  being run (padding excluded; seq2seq decoder layers use the label positions, cross-attention
  key/value projections the encoder's mask);
- :func:`accumulate_magnitudes` and :func:`quantile_masks`: the per-unit statistic (one fused
  reduction per layer and micro-batch) and the keep-mask ``statistic >= quantile(statistic, q)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch
from torch import nn

from retain.engine.sharding import local_part, local_tensor
from retain.models.architecture import transformers_model

#: paper: per-token |h| / ||h||_1 averaged over tokens; code: sum of |h| over tokens.
STATISTICS = ("l1_mean", "raw_sum")

_TINY = 1e-30


@dataclass(eq=False)
class MaskTarget:
    """One measured layer output and the weight-gradient rows its units own.

    ``grads`` pairs a parameter with the dimension of its output units (0 for ``nn.Linear``
    weights ``[out, in]``, 1 for GPT-2 ``Conv1D`` weights ``[in, out]``).
    """

    name: str
    module: nn.Module
    units: int
    grads: list[tuple[nn.Parameter, int]]
    #: seq2seq only: "encoder" (inside the encoder) or "decoder" (decoder and head); None otherwise.
    side: Optional[str] = None
    #: a PEFT LoRA wrapper: its token rows are found by a forward pre-hook, before ``lora_A`` runs.
    lora_wrapper: bool = False
    #: for ``lora_A``: the LoRA wrapper target whose token rows it shares (its input is dropout(x)).
    rows_from: Optional["MaskTarget"] = None
    #: token rows resolved by the pre-hook of a LoRA wrapper, read by it and its ``lora_A``.
    current_rows: Any = None
    #: one expert of a fused expert tensor (:mod:`retain.methods.migu.experts`): ``grads`` names the
    #: whole fused tensor and its row dimension; this target owns slice ``expert`` along dim 0.
    expert: Optional[int] = None
    total: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    tokens: torch.Tensor = field(default_factory=lambda: torch.zeros(()))


# -- which layers ------------------------------------------------------------------------------


def _lora_linear_class() -> Optional[type]:
    try:
        from peft.tuners.lora.layer import Linear as LoraLinear
    except ImportError:  # PEFT is optional for full fine-tuning
        return None
    return LoraLinear


def _conv1d_class() -> Optional[type]:
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:
        return None
    return Conv1D


#: the transformers model inside a PEFT wrapper (the model itself otherwise)
unwrap_peft = transformers_model


def head_module_ids(root: nn.Module) -> set[int]:
    """Modules of the output head: the output embeddings and anything outside the backbone.

    ``base_model`` is the backbone of a transformers model (``bert`` of a BERT classifier,
    ``model`` of a LLaMA LM); layers outside it (``classifier``, ``score``, ``lm_head``) are the
    head. T5 has no separate backbone attribute, so its head is its output embeddings only.
    """
    ids: set[int] = set()
    get_output = getattr(root, "get_output_embeddings", None)
    output = get_output() if callable(get_output) else None
    if isinstance(output, nn.Module):
        ids.update(id(m) for m in output.modules())
    backbone = getattr(root, "base_model", root)
    if isinstance(backbone, nn.Module) and backbone is not root:
        inside = {id(m) for m in backbone.modules()}
        ids.update(id(m) for m in root.modules() if id(m) not in inside and m is not root)
    return ids


def _encoder_module_ids(root: nn.Module) -> set[int]:
    get_encoder = getattr(root, "get_encoder", None)
    encoder = get_encoder() if callable(get_encoder) else None
    return {id(m) for m in encoder.modules()} if isinstance(encoder, nn.Module) else set()


def side_finder(model: nn.Module, seq2seq: bool) -> Callable[[nn.Module], Optional[str]]:
    """``side_of(module)``: "encoder" or "decoder" for a module of a seq2seq model, None otherwise."""
    encoder_ids = _encoder_module_ids(unwrap_peft(model)) if seq2seq else set()

    def side_of(module: nn.Module) -> Optional[str]:
        if not seq2seq:
            return None
        return "encoder" if id(module) in encoder_ids else "decoder"

    return side_of


def find_targets(model: nn.Module, include_head: bool, seq2seq: bool) -> list[MaskTarget]:
    """The trainable linear layers of ``model`` (a transformers model, PEFT-wrapped or not).

    Frozen layers (LoRA base weights, frozen adapters) are skipped: there is no gradient to mask.
    Fused expert tensors are not linear layers: :mod:`retain.methods.migu.experts` targets them.
    """
    root = unwrap_peft(model)
    lora_class, conv1d_class = _lora_linear_class(), _conv1d_class()
    plain = (nn.Linear,) + ((conv1d_class,) if conv1d_class is not None else ())
    heads = set() if include_head else head_module_ids(root)
    side_of = side_finder(root, seq2seq)
    claimed: set[int] = set()
    targets: list[MaskTarget] = []

    for name, module in root.named_modules():
        if id(module) in claimed or id(module) in heads:
            continue
        if lora_class is not None and isinstance(module, lora_class):
            claimed.update(id(m) for m in module.modules())
            targets.extend(_lora_targets(name, module, side_of(module)))
        elif isinstance(module, plain) and module.weight.requires_grad:
            is_conv1d = conv1d_class is not None and isinstance(module, conv1d_class)
            units = module.weight.shape[1] if is_conv1d else module.weight.shape[0]
            targets.append(MaskTarget(name, module, units, [(module.weight, 1 if is_conv1d else 0)], side_of(module)))
    return targets


def _lora_targets(name: str, layer: nn.Module, side: Optional[str]) -> list[MaskTarget]:
    """The wrapper (its whole output masks every trainable ``lora_B``) and each trainable ``lora_A``."""
    adapters = [k for k in layer.lora_A if layer.lora_A[k].weight.requires_grad or layer.lora_B[k].weight.requires_grad]
    if not adapters:
        return []
    lora_b = [(layer.lora_B[k].weight, 0) for k in adapters if layer.lora_B[k].weight.requires_grad]
    wrapper = MaskTarget(name, layer, layer.lora_B[adapters[0]].weight.shape[0], lora_b, side, lora_wrapper=True)
    targets = [wrapper]  # kept even without a trainable lora_B: its pre-hook finds lora_A's token rows
    for k in adapters:
        lora_a = layer.lora_A[k]
        if lora_a.weight.requires_grad:
            targets.append(
                MaskTarget(f"{name}.lora_A.{k}", lora_a, lora_a.weight.shape[0], [(lora_a.weight, 0)], side, rows_from=wrapper)
            )
    return targets


# -- which rows are real tokens -----------------------------------------------------------------


class TokenRows:
    """Real-token rows of the micro-batch being run, for the layers' flattened outputs.

    Set from the top-level forward's keyword arguments: ``attention_mask`` marks the tokens of a
    decoder-only model, a classifier and a seq2seq encoder; seq2seq decoder positions are real
    where ``decoder_attention_mask`` is set or, as training batches carry none, where the labels
    are not ``-100`` (decoder position t reads label t-1 and predicts label t, so the positions of
    real labels are exactly the decoder's real positions). A seq2seq decoder layer whose input is
    the encoder output (cross-attention key/value projections) uses the encoder mask. A layer whose
    row count matches neither (pooled heads: one row per example) counts every row.
    """

    def __init__(self, include_padding: bool = False) -> None:
        self.include_padding = include_padding
        self.encoder: Optional[torch.Tensor] = None
        self.decoder: Optional[torch.Tensor] = None
        self.encoder_output_ptr: Optional[int] = None

    def set_batch(self, kwargs: dict[str, Any], seq2seq: bool) -> None:
        self.encoder_output_ptr = None
        self.encoder = self.decoder = None
        if self.include_padding:
            return
        mask = kwargs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.dim() == 2:
            self.encoder = mask.reshape(-1).to(torch.float32)
        if seq2seq:
            decoder_mask = kwargs.get("decoder_attention_mask")
            labels = kwargs.get("labels")
            if isinstance(decoder_mask, torch.Tensor):
                self.decoder = decoder_mask.reshape(-1).to(torch.float32)
            elif isinstance(labels, torch.Tensor) and labels.dim() == 2:
                self.decoder = (labels != -100).reshape(-1).to(torch.float32)

    def rows_for(self, target: MaskTarget, layer_input: Any, n_rows: int) -> Optional[torch.Tensor]:
        """A float 0/1 weight per output row, or None when every row counts."""
        if self.include_padding:
            return None
        candidate = self.encoder
        if target.side == "decoder":
            reads_encoder = (
                isinstance(layer_input, torch.Tensor)
                and self.encoder_output_ptr is not None
                and layer_input.data_ptr() == self.encoder_output_ptr
            )
            candidate = self.encoder if reads_encoder else self.decoder
        if candidate is None or candidate.numel() != n_rows:
            return None
        return candidate


# -- the statistic and the mask -----------------------------------------------------------------


#: CPU: rows of a layer output are reduced in slices of about 1 MiB of fp32, so that |h| is reused
#: from cache by the norm and the matrix-vector product (3x faster on 32 MiB outputs than one pass).
_CPU_SLICE_ELEMENTS = 1 << 18


@torch.no_grad()
def accumulate_magnitudes(
    total: torch.Tensor, tokens: torch.Tensor, output: torch.Tensor, rows: Optional[torch.Tensor], statistic: str
) -> None:
    """Add one layer output's per-unit magnitudes to ``total`` (fp32, in place).

    ``l1_mean``: each row's |h| divided by its L1 norm, weighted by ``rows`` (0 for padding), is
    summed with one matrix-vector product; ``raw_sum``: the rows' |h| summed the same way.
    ``tokens`` counts the rows that were added (the ``l1_mean`` divisor).
    """
    units = output.shape[-1]
    flat = output.detach().reshape(-1, units)
    count = flat.shape[0]
    step = count if flat.device.type != "cpu" else max(1, _CPU_SLICE_ELEMENTS // units)
    for start in range(0, count, step):
        chunk = flat[start : start + step]
        # fp32 copy made once: in place on a new low-precision->fp32 copy, out of place otherwise
        magnitudes = chunk.float().abs_() if chunk.dtype != torch.float32 else chunk.abs()
        weights = rows[start : start + step] if rows is not None else None
        if statistic == "l1_mean":
            inverse_norms = magnitudes.sum(dim=1).clamp_min_(_TINY).reciprocal_()
            weights = inverse_norms.mul_(weights) if weights is not None else inverse_norms
        if weights is not None:
            total.addmv_(magnitudes.t(), weights)
        else:
            total.add_(magnitudes.sum(dim=0))
    tokens.add_(rows.sum() if rows is not None else count)


def finish_statistic(total: torch.Tensor, tokens: torch.Tensor, statistic: str) -> torch.Tensor:
    """The per-unit statistic of a step (a new tensor): a mean over tokens (``l1_mean``) or the raw sum."""
    if statistic == "l1_mean":
        return total / tokens.clamp_min(1.0).unsqueeze(-1)
    return total.clone()


def quantile_masks(statistics: torch.Tensor, threshold: float) -> torch.Tensor:
    """Keep-masks of the rows of ``statistics`` [layers, units]: units at or above the quantile.

    ``threshold`` 0 keeps every unit (the minimum is the 0-quantile); 0.7 keeps the top 30% (ties
    at the cut are kept).
    """
    cut = torch.quantile(statistics, threshold, dim=1, keepdim=True)
    return statistics >= cut


@torch.no_grad()
def mask_gradient_rows(param: nn.Parameter, dim: int, keep: torch.Tensor) -> None:
    """Zero the gradient slices of ``param`` along ``dim`` where ``keep`` is false (in place)."""
    if param.grad is None:
        return
    grad, keep = local_tensor(param.grad), local_part(keep, param.grad, dim)
    shape = [1] * grad.dim()
    shape[dim] = keep.numel()
    grad.mul_(keep.to(grad.dtype).reshape(shape))


@torch.no_grad()
def mask_gradient_rows_many(masks: list[tuple[nn.Parameter, Union[int, tuple[int, ...]], torch.Tensor]]) -> None:
    """:func:`mask_gradient_rows` for many parameters in one multi-tensor multiply.

    One call per step instead of one per parameter (a Python round trip and a dtype conversion
    each): ``masks`` holds (parameter, unit dimension, keep-mask) triples. A fused expert tensor
    gives the dimensions ``(0, row_dim)`` and a keep-mask ``[experts, rows]``.
    """
    grads: list[torch.Tensor] = []
    factors: list[torch.Tensor] = []
    for param, dim, keep in masks:
        if param.grad is None:
            continue
        dims = (dim,) if isinstance(dim, int) else dim
        # FSDP2: this process holds some rows (or experts) of the gradient; it masks them with their units.
        grad, keep = local_tensor(param.grad), local_part(keep, param.grad, dims[0])
        shape = [1] * grad.dim()
        for axis, size in zip(dims, keep.shape):
            shape[axis] = size
        grads.append(grad)
        factors.append(keep.to(grad.dtype).reshape(shape))  # no copy when keep has grad's dtype
    if grads:
        torch._foreach_mul_(grads, factors)
