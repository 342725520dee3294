"""What methods act on inside a model, named once per architecture: first, mixture-of-experts layers.

transformers 5 stores the experts of a mixture-of-experts layer as fused 3-D tensors of one module
(Mixtral's ``MixtralExperts``, Qwen2-MoE's and Qwen3-MoE's ``...Experts``): ``gate_up_proj``
[E, 2I, H] and ``down_proj`` [E, H, I], expert ``e`` being slice ``e`` along dim 0, and the module
runs each token through the k experts its router picked. Such a tensor is E linear layers, not
one: a method that works per linear layer (MIGU's output rows) or per weight matrix (KIF's matrix
units) must split it by expert. Methods ask :func:`expert_groups` instead of matching module names
or class names, so every model that follows the fused layout is covered, PEFT-wrapped or not.

Found structurally: a module with an integer ``num_experts`` attribute (or, failing that, the
model config's ``num_local_experts`` / ``num_experts``) holding 3-D parameters whose leading dim is
that count. This is the first piece of the model-family registry of issue 36 (which will also name
linear layers, attention heads and skill units here).

The router's auxiliary (load-balancing) loss is part of a family's loss:
:func:`set_router_aux_loss` switches it on where the config has one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from torch import nn

#: config attributes that hold a model's expert count, in the order they are tried
_EXPERT_COUNT_KEYS = ("num_local_experts", "num_experts")


@dataclass(frozen=True, eq=False)
class ExpertTensor:
    """One fused expert tensor: ``param`` holds one matrix per expert along ``expert_dim``.

    ``row_dim`` is the dimension of ``param`` that holds the output rows of each expert's matrix
    (1 for transformers' default ``[E, out, in]`` layout, 2 for a module storing ``[E, in, out]``,
    ``is_transposed``).
    """

    #: the parameter's name in the transformers model (no PEFT prefix), e.g. ``model.layers.0.mlp.experts.down_proj``
    name: str
    #: the attribute of the experts module (``gate_up_proj``, ``down_proj``)
    attribute: str
    param: nn.Parameter
    expert_dim: int = 0
    row_dim: int = 1

    @property
    def num_experts(self) -> int:
        return int(self.param.shape[self.expert_dim])

    @property
    def rows(self) -> int:
        """Output rows of each expert's matrix."""
        return int(self.param.shape[self.row_dim])


@dataclass(frozen=True, eq=False)
class ExpertGroup:
    """The experts of one mixture-of-experts layer: one module and its trainable fused tensors."""

    #: the module's name in the transformers model, e.g. ``model.layers.0.mlp.experts``
    name: str
    module: nn.Module
    num_experts: int
    #: the trainable fused tensors (frozen ones are left out: no method has a gradient to act on)
    tensors: tuple[ExpertTensor, ...]

    def tensor(self, attribute: str) -> Optional[ExpertTensor]:
        """The trainable fused tensor of that attribute, or None (absent or frozen)."""
        return next((t for t in self.tensors if t.attribute == attribute), None)

    @property
    def gated_linear(self) -> bool:
        """Each expert computes ``down(act(gate) * up)`` with ``gate, up = chunk(gate_up(x), 2)``.

        The layout of Mixtral, Qwen2-MoE and Qwen3-MoE (transformers' default experts layout:
        ``gate_up_proj`` [E, 2I, H] with gate and up concatenated, ``down_proj`` [E, H, I], no
        biases, no transposition, an ``act_fn``). A method that recomputes an expert's outputs
        (MIGU) needs exactly this and refuses other layouts.
        """
        module = self.module
        gate_up, down = getattr(module, "gate_up_proj", None), getattr(module, "down_proj", None)
        if not (isinstance(gate_up, nn.Parameter) and isinstance(down, nn.Parameter)):
            return False
        if gate_up.ndim != 3 or down.ndim != 3 or not callable(getattr(module, "act_fn", None)):
            return False
        flags = {"is_transposed": False, "has_bias": False, "has_post_expert_norm": False, "has_gate": True, "is_concatenated": True}
        if any(getattr(module, key, default) != default for key, default in flags.items()):
            return False
        experts, double_inner, hidden = gate_up.shape
        return double_inner % 2 == 0 and tuple(down.shape) == (experts, hidden, double_inner // 2)


def transformers_model(model: nn.Module) -> nn.Module:
    """The transformers model inside a PEFT wrapper (the model itself otherwise)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def _expert_count(module: nn.Module, config: Any) -> Optional[int]:
    count = getattr(module, "num_experts", None)
    if isinstance(count, int) and not isinstance(count, bool) and count > 0:
        return count
    for key in _EXPERT_COUNT_KEYS:
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def expert_groups(model: nn.Module) -> list[ExpertGroup]:
    """Every mixture-of-experts module of ``model`` that has a trainable fused expert tensor.

    A module counts when it holds (directly, not in a child) 3-D parameters whose leading dim is
    its expert count: ``num_experts`` on the module, else the config's ``num_local_experts`` /
    ``num_experts``. Dense models, and MoE models whose experts are separate ``nn.Linear``
    layers, have none. Under LoRA the fused tensors are frozen base weights, so there is no group.
    """
    root = transformers_model(model)
    config = getattr(root, "config", None)
    groups: list[ExpertGroup] = []
    for name, module in root.named_modules():
        fused = [(attr, p) for attr, p in module.named_parameters(recurse=False) if p.ndim == 3]
        if not fused:
            continue
        count = _expert_count(module, config)
        if count is None:
            continue
        row_dim = 2 if getattr(module, "is_transposed", False) is True else 1
        tensors = tuple(
            ExpertTensor(f"{name}.{attr}" if name else attr, attr, param, 0, row_dim)
            for attr, param in fused
            if param.shape[0] == count and param.requires_grad
        )
        if tensors:
            groups.append(ExpertGroup(name, module, count, tensors))
    return groups


def has_router_aux_loss(model: nn.Module) -> bool:
    """The model's config has a router load-balancing loss transformers can add to its loss."""
    config = getattr(transformers_model(model), "config", None)
    return hasattr(config, "output_router_logits") and hasattr(config, "router_aux_loss_coef")


def set_router_aux_loss(model: nn.Module, enabled: bool) -> bool:
    """Switch the router's auxiliary loss on or off where the model has one; True if it has one.

    With ``output_router_logits`` set, a transformers MoE causal LM returns the router logits
    and, when given labels, adds ``router_aux_loss_coef * aux_loss`` to ``outputs.loss`` (the
    loss retain trains on); without labels (generation, scoring) only ``aux_loss`` is computed.
    """
    if not has_router_aux_loss(model):
        return False
    transformers_model(model).config.output_router_logits = bool(enabled)
    return True
