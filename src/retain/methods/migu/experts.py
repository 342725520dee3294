"""MIGU on mixture-of-experts layers: every expert's matrices are linear layers of their own.

A fused expert module (:func:`retain.models.architecture.expert_groups`) holds, per expert ``e``,
``gate_up_proj[e]`` (2I output rows) and ``down_proj[e]`` (H output rows). Expert ``e`` is a
separate pair of linear layers that sees only the tokens its router sent to it, so its statistic
is taken over those tokens only, exactly as a linear layer's is over its real tokens:

    gate_up output  g_t = gate_up_proj[e] x_t                     for each real token t routed to e
    down output     d_t = down_proj[e] (act(gate(g_t)) * up(g_t))

The down output is the linear layer's own output, before the router's weight scales it: a
separate linear layer never sees what is done to its output afterwards, and under the default
``l1_mean`` statistic a positive per-token scale cancels in |d_t| / ||d_t||_1 anyway.

The module's forward may be swapped for a grouped kernel (transformers'
``use_experts_implementation``; ``grouped_mm`` is the default), so nothing is read from inside
it: a forward pre-hook captures its inputs (``hidden_states``, ``top_k_index``) and recomputes the
routed experts' outputs without gradients (one extra expert forward per training micro-batch).
Each expert matrix is then one :class:`~retain.methods.migu.magnitude.MaskTarget` (its rows are
the units), so the quantile rule, the data-parallel reduction and the report are the linear
layers'; the masks of a fused tensor's experts are applied together as one ``[E, rows]`` mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from retain.errors import MethodError
from retain.methods.migu.magnitude import MaskTarget, accumulate_magnitudes
from retain.models.architecture import ExpertGroup, expert_groups

#: the fused tensors MIGU masks, in the order an expert computes them
_MATRICES = ("gate_up_proj", "down_proj")


@dataclass(eq=False)
class ExpertTargets:
    """The per-expert mask targets of one fused expert module (None: that tensor is frozen)."""

    group: ExpertGroup
    gate_up: Optional[list[MaskTarget]]
    down: Optional[list[MaskTarget]]

    @property
    def targets(self) -> list[MaskTarget]:
        return [*(self.gate_up or []), *(self.down or [])]


def find_expert_targets(model: nn.Module, side_of: Any = lambda module: None) -> list[ExpertTargets]:
    """One target per expert and trainable fused matrix of ``model`` (PEFT-wrapped or not).

    ``side_of(module)`` gives a seq2seq target's side (see :class:`MaskTarget`). A fused expert
    module whose layout MIGU cannot recompute stops the run: its experts would otherwise train
    unmasked while the rest of the model is masked.
    """
    found: list[ExpertTargets] = []
    for group in expert_groups(model):
        if not group.gated_linear:
            raise MethodError(
                f"methods: migu cannot measure the experts of {group.name} ({type(group.module).__name__}): "
                "it supports fused gate_up_proj [E, 2I, H] / down_proj [E, H, I] experts (Mixtral, Qwen-MoE); "
                "freeze them or use another method"
            )
        per_matrix: dict[str, Optional[list[MaskTarget]]] = {}
        for attribute in _MATRICES:
            tensor = group.tensor(attribute)
            per_matrix[attribute] = None if tensor is None else [
                MaskTarget(
                    f"{group.name}.{attribute}[{e}]", group.module, tensor.rows, [(tensor.param, tensor.row_dim)],
                    side_of(group.module), expert=e,
                )
                for e in range(group.num_experts)
            ]
        found.append(ExpertTargets(group, per_matrix["gate_up_proj"], per_matrix["down_proj"]))
    return found


def expert_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """``hidden_states`` [tokens, H] and ``top_k_index`` [tokens, k] of an experts module's call."""
    hidden = kwargs.get("hidden_states", args[0] if len(args) > 0 else None)
    index = kwargs.get("top_k_index", args[1] if len(args) > 1 else None)
    if not (isinstance(hidden, torch.Tensor) and isinstance(index, torch.Tensor)):
        return None, None
    return hidden, index


def routed_tokens(top_k_index: torch.Tensor, num_experts: int, rows: Optional[torch.Tensor]) -> torch.Tensor:
    """[tokens, E] bool: token t was sent to expert e (and is a real token when ``rows`` is given).

    An index equal to ``num_experts`` (transformers' marker for "no local expert" under expert
    parallelism) routes nowhere.
    """
    routed = torch.nn.functional.one_hot(top_k_index.long(), num_experts + 1).sum(dim=1)[:, :num_experts] > 0
    if rows is not None:
        routed &= rows.to(routed.device).bool().unsqueeze(1)
    return routed


@torch.no_grad()
def measure_experts(
    targets: ExpertTargets, hidden: torch.Tensor, top_k_index: torch.Tensor, rows: Optional[torch.Tensor], statistic: str
) -> None:
    """Add each expert's matrix outputs, over the real tokens routed to it, to its targets' sums."""
    module = targets.group.module
    gate_up_proj, down_proj = module.gate_up_proj, module.down_proj
    flat = hidden.reshape(-1, hidden.shape[-1])
    routed = routed_tokens(top_k_index.reshape(flat.shape[0], -1), targets.group.num_experts, rows)
    for e in torch.nonzero(routed.any(dim=0)).flatten().tolist():
        x = flat[routed[:, e]]
        gate_up = nn.functional.linear(x, gate_up_proj[e])
        if targets.gate_up is not None:
            target = targets.gate_up[e]
            accumulate_magnitudes(target.total, target.tokens, gate_up, None, statistic)
        if targets.down is not None:
            gate, up = gate_up.chunk(2, dim=-1)
            down = nn.functional.linear(module.act_fn(gate) * up, down_proj[e])
            target = targets.down[e]
            accumulate_magnitudes(target.total, target.tokens, down, None, statistic)
