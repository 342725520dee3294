"""Skill units: the pieces of a model whose importance KIF measures and fuses one by one.

A model's trainable tensors are cut into *units* and every unit gets one index in a flat vector,
so importance, fusion weights and masks are all plain ``[n_units]`` tensors:

- **rank units** (LoRA, the default there): for a LoRA module with ``dW = B A`` (A: r x in,
  B: out x r), unit ``i`` is row ``i`` of A together with column ``i`` of B, the rank-one piece
  ``B[:, i] A[i, :]`` of the update. Both tensors point at the same ``r`` indices.
- **matrix units**: each trainable tensor is one unit (each LoRA A and B under ``matrix``, every
  weight under full fine-tuning, the classifier head PEFT trains fully under LoRA). Tied weights
  are one Parameter, listed once by ``named_parameters``, hence one unit. A fused expert tensor of
  a mixture-of-experts layer (:func:`retain.models.architecture.expert_groups`) holds one matrix
  per expert along dim 0: each expert's matrix is its own unit (``...gate_up_proj[e0]``, ...).

A unit's score is the mean of the element scores of its (virtual) weights. For a rank unit that
is the mean over the outer product of the B column and A row scores, which equals the product of
their two means; so in general a unit's score is the product, over the tensors that carry it, of
that tensor's mean score along the unit (a matrix unit has one tensor: its plain mean).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

import torch

from retain.errors import MethodError
from retain.models.architecture import expert_groups

#: ``...lora_A.<adapter>.weight`` / ``...lora_embedding_A.<adapter>`` (PEFT's names)
_LORA_A = re.compile(r"\.lora_(embedding_)?A\.")
_LORA_B = re.compile(r"\.lora_(embedding_)?B\.")
_PEFT_PREFIX = "base_model.model."
GRANULARITIES = ("rank", "matrix")


@dataclass
class TensorUnits:
    """Where one trainable tensor's units sit in the unit vector.

    ``axis`` None: the whole tensor is one unit; 0: unit ``first + i`` is slice ``i`` along dim 0
    (LoRA A rows, or the experts of a fused expert tensor); 1: slice ``i`` along dim 1 (LoRA B
    columns). ``kind`` is the family the units are normalised in: "rank" or "matrix" (an
    expert's matrix is a matrix unit, though it is a slice).
    """

    name: str
    param: torch.nn.Parameter
    first: int
    count: int
    axis: Optional[int] = None
    kind: str = "matrix"

    def per_unit_mean(self, element_scores: torch.Tensor) -> torch.Tensor:
        """[count] mean of ``element_scores`` (shaped like the tensor) over each unit's slice."""
        if self.axis is None:
            return element_scores.mean().reshape(1)
        dims = [d for d in range(element_scores.ndim) if d != self.axis]
        return element_scores.mean(dim=dims) if dims else element_scores

    def broadcast(self, per_unit: torch.Tensor) -> torch.Tensor:
        """This tensor's slice of a ``[n_units]`` vector, shaped to broadcast against the tensor."""
        chunk = per_unit[self.first : self.first + self.count]
        shape = [1] * self.param.ndim
        if self.axis is not None:
            shape[self.axis] = self.count
        return chunk.reshape(shape)


@dataclass
class SkillUnits:
    """All units of a model: names (stable across runs, for resume checks) and tensor layout."""

    names: list[str]
    tensors: list[TensorUnits]
    granularity: str
    #: (A, B) of every LoRA module, whatever the granularity (the orthogonality regulariser).
    lora_pairs: list[tuple[torch.nn.Parameter, torch.nn.Parameter]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def parameters(self) -> list[torch.nn.Parameter]:
        return [t.param for t in self.tensors]

    def unit_scores(self, element_scores: list[torch.Tensor]) -> torch.Tensor:
        """[n_units] fp32 unit scores from per-element scores (one tensor per entry of ``tensors``)."""
        if len(element_scores) != len(self.tensors):
            raise ValueError(f"{len(element_scores)} score tensors for {len(self.tensors)} unit tensors")
        device = element_scores[0].device if element_scores else torch.device("cpu")
        scores = torch.ones(len(self.names), dtype=torch.float32, device=device)
        for tensor, element in zip(self.tensors, element_scores):
            scores[tensor.first : tensor.first + tensor.count] *= tensor.per_unit_mean(element.float())
        return scores

    def bind(self, parameters: dict[str, torch.nn.Parameter]) -> None:
        """Point every unit tensor (and LoRA pair) at the parameter of its name in ``parameters``.

        Sharded training replaces a model's parameters (FSDP2 registers sharded ones when the
        model is first prepared), so units built on the bare model are bound again to the
        parameters the optimizer holds (:func:`retain.engine.sharding.training_parameters`).
        """
        by_id = {id(t.param): t for t in self.tensors}
        for tensor in self.tensors:
            found = parameters.get(tensor.name)
            if found is None:
                raise MethodError(f"kif: the model has no parameter {tensor.name} any more (was it replaced?)")
            tensor.param = found
        # every LoRA A and B is trainable, hence a unit tensor
        self.lora_pairs = [(by_id[id(a)].param, by_id[id(b)].param) for a, b in self.lora_pairs]

    def families(self) -> torch.Tensor:
        """[n_units] int64: 0 for a matrix unit, 1 for a rank unit (normalised apart)."""
        return torch.tensor([kind == "rank" for kind in self.kinds()], dtype=torch.int64)

    def kinds(self) -> list[str]:
        """'rank' or 'matrix' per unit (for the report)."""
        kinds = ["matrix"] * len(self.names)
        for tensor in self.tensors:
            kinds[tensor.first : tensor.first + tensor.count] = [tensor.kind] * tensor.count
        return kinds


def _short(name: str) -> str:
    return name[len(_PEFT_PREFIX) :] if name.startswith(_PEFT_PREFIX) else name


def _module_of(a_name: str) -> str:
    return _short(_LORA_A.split(a_name)[0])


def build_skill_units(model: torch.nn.Module, granularity: str) -> SkillUnits:
    """Cut the trainable tensors of ``model`` into units (see the module docstring).

    ``rank`` needs LoRA tensors; a LoRA A whose B is missing or whose rank does not match is
    treated as matrix units (never silently mis-paired).
    """
    if granularity not in GRANULARITIES:
        raise MethodError(f"kif.units: {granularity!r} is not one of {', '.join(GRANULARITIES)}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise MethodError("kif: the model has no trainable parameters to cut into skill units")
    by_name = dict(named)
    pairs: dict[str, str] = {}  # A name -> B name
    for name, param in named:
        if _LORA_A.search(name):
            b_name = _LORA_A.sub(lambda m: f".lora_{m.group(1) or ''}B.", name, count=1)
            b_param = by_name.get(b_name)
            if b_param is not None and param.ndim >= 2 and b_param.ndim >= 2 and param.shape[0] == b_param.shape[1]:
                pairs[name] = b_name
    if granularity == "rank" and not pairs:
        raise MethodError("kif.units: 'rank' units need LoRA adapters (set model.lora.enabled=true or kif.units=matrix)")
    lora_pairs = [(by_name[a], by_name[b]) for a, b in pairs.items()]
    experts = {id(t.param): t for group in expert_groups(model) for t in group.tensors}
    paired_b = set(pairs.values())
    names: list[str] = []
    tensors: list[TensorUnits] = []
    for name, param in named:
        if granularity == "rank" and name in paired_b:
            continue  # placed together with its A
        if granularity == "rank" and name in pairs:
            rank = param.shape[0]
            first = len(names)
            module = _module_of(name)
            names.extend(f"{module}[r{i}]" for i in range(rank))
            tensors.append(TensorUnits(name, param, first, rank, axis=0, kind="rank"))
            tensors.append(TensorUnits(pairs[name], by_name[pairs[name]], first, rank, axis=1, kind="rank"))
            continue
        expert = experts.get(id(param))
        if expert is not None:  # one matrix unit per expert
            names.extend(f"{_short(name)}[e{i}]" for i in range(expert.num_experts))
            tensors.append(TensorUnits(name, param, len(names) - expert.num_experts, expert.num_experts, axis=expert.expert_dim))
            continue
        tensors.append(TensorUnits(name, param, len(names), 1))
        names.append(_short(name))
    return SkillUnits(names=names, tensors=tensors, granularity=granularity, lora_pairs=lora_pairs)
