"""Importance-guided fusion of two models unit by unit, and the importance bookkeeping it needs.

All vectors here are ``[n_units]`` fp32 tensors (see :mod:`retain.methods.kif.skill_units`). Fusion
writes, for every unit ``u`` and every weight ``w`` of that unit,

    w_fused = lambda_new(u) * w_new + (1 - lambda_new(u)) * w_prev

in fp32 on the tensors themselves (never on a merged ``B A``), so ``lambda_new = 1`` gives the
new model bit for bit and ``lambda_new = 0`` the previous one.

Under sharded training (FSDP2) the snapshot and the fusion read each unit tensor whole (gathered,
identical on every process) and each process writes back the rows of its own shard.
"""

from __future__ import annotations

from typing import Optional

import torch

from retain.engine.sharding import gather_full, write_full
from retain.methods.kif.skill_units import SkillUnits


def _min_max(values: torch.Tensor) -> torch.Tensor:
    low, high = values.min(), values.max()
    span = high - low
    if span <= 0:
        return torch.zeros_like(values)
    return (values - low) / span


def min_max(values: torch.Tensor, families: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Norm(x) = (x - min) / (max - min); a constant vector maps to zeros.

    ``families`` (an int per unit) normalises each family of units on its own. Rank units (a
    product of two means, ~1e-25 on a LoRA model) and matrix units (one mean, ~1e-9 on a fully
    trained head) are not on one scale: sharing one min and max would squash every rank unit to
    ~0 and make importance-guided fusion a plain average.
    """
    values = values.float()
    if families is None:
        return _min_max(values)
    normalised = torch.empty_like(values)
    for family in families.unique():
        members = families == family
        normalised[members] = _min_max(values[members])
    return normalised


def cumulative_importance(
    previous: torch.Tensor, new: torch.Tensor, old_weight: float = 0.7, families: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """I_cum(k) = Norm(old_weight * Norm(I_cum(k-1)) + (1 - old_weight) * Norm(I_k)), Norm per family."""
    mixed = old_weight * min_max(previous, families) + (1.0 - old_weight) * min_max(new, families)
    return min_max(mixed, families)


def important(normalised: torch.Tensor, top_fraction: float) -> torch.Tensor:
    """Units strictly above the ``1 - top_fraction`` quantile (linear interpolation)."""
    threshold = torch.quantile(normalised.float(), 1.0 - top_fraction)
    return normalised > threshold


def categorical_weights(
    new: torch.Tensor,
    old: torch.Tensor,
    top_fraction: float = 0.2,
    shared_new_weight: float = 0.3,
    neither_new_weight: float = 0.5,
) -> torch.Tensor:
    """lambda_new per unit from the hard table (``new``/``old``: normalised importances).

    old important & new important -> shared_new_weight (0.3: 0.7 prev + 0.3 new);
    old only -> 0 (keep the previous weights); new only -> 1 (take the new weights);
    neither -> neither_new_weight (0.5: plain average).
    """
    new_important = important(new, top_fraction)
    old_important = important(old, top_fraction)
    weights = torch.full_like(new, neither_new_weight, dtype=torch.float32)
    weights[new_important & old_important] = shared_new_weight
    weights[old_important & ~new_important] = 0.0
    weights[new_important & ~old_important] = 1.0
    return weights


def uniform_weights(new: torch.Tensor) -> torch.Tensor:
    """lambda_new = 0.5 for every unit: plain averaging, the ablation that ignores importance."""
    return torch.full_like(new, 0.5, dtype=torch.float32)


def adaptive_weights(new: torch.Tensor, old: torch.Tensor, temperature: float = 0.25) -> torch.Tensor:
    """lambda_new = exp(c/tau) / (exp(c/tau) + exp(p/tau)) = sigmoid((c - p) / tau) per unit."""
    return torch.sigmoid((new.float() - old.float()) / temperature)


def task_specific(new: torch.Tensor, old: torch.Tensor, top_fraction: float = 0.2) -> torch.Tensor:
    """Units important for the new task and not for the earlier ones (KIF-M freezes them)."""
    return important(new, top_fraction) & ~important(old, top_fraction)


@torch.no_grad()
def snapshot(units: SkillUnits, device: str = "cpu") -> list[torch.Tensor]:
    """Exact full copies of the unit tensors (their own dtype: a copy, so nothing is rounded)."""
    return [gather_full(t.param.detach()).to(device, copy=True) for t in units.tensors]


@torch.no_grad()
def fuse_(units: SkillUnits, previous: list[torch.Tensor], lambda_new: torch.Tensor) -> None:
    """Overwrite the unit tensors with ``lambda_new * current + (1 - lambda_new) * previous``."""
    if len(previous) != len(units.tensors):
        raise ValueError(f"{len(previous)} snapshot tensors for {len(units.tensors)} unit tensors")
    for tensor, prev in zip(units.tensors, previous):
        param = tensor.param
        new = gather_full(param.detach()).float()
        weight = tensor.broadcast(lambda_new.to(new.device, torch.float32))
        fused = weight * new + (1.0 - weight) * prev.to(new.device, torch.float32)
        write_full(param, fused.to(param.dtype))
