"""KIF-M's post-fusion replay: optimizer steps on earlier tasks' buffer with some units frozen.

KIF asks the engine for these steps (:class:`~retain.methods.base.ExtraSteps`); the engine's loop
runs them. The frozen units must come out bit-identical, by construction rather than by luck:

- tensors whose units are all frozen are left out of the optimizer;
- partially frozen tensors (a LoRA A or B with some frozen ranks) get their frozen slices'
  gradients set to +0.0 before clipping and every step, and the optimizer is a fresh AdamW with
  ``weight_decay=0``: its moments of those slices stay exactly 0, so each update there is
  ``-lr * 0 / (sqrt(0) + eps) = -0.0`` and ``w + -0.0 == w`` (a carried optimizer's moments or any
  weight decay would move weights whose gradient is zero).

Under sharded training (FSDP2) the tensors are the sharded parameters the optimizer holds, and
each process masks the rows of its own gradient shard.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

import torch

from retain.data.collate import EncodedExample
from retain.engine.sharding import local_part, local_tensor
from retain.methods.base import ExtraSteps, StepStats
from retain.methods.common.batch_plan import BatchPlan, passes
from retain.methods.kif.skill_units import SkillUnits

ExtraLoss = Callable[[], Optional[torch.Tensor]]


@dataclass
class FrozenSplit:
    """How the frozen units fall on the tensors."""

    trainable: list[torch.nn.Parameter]  # tensors with at least one unit free
    masks: list[tuple[torch.nn.Parameter, torch.Tensor]]  # (tensor, bool mask of its frozen local elements)
    fully_frozen: int  # tensors left out of the optimizer

    def zero_frozen_gradients(self) -> None:
        for param, mask in self.masks:
            if param.grad is not None:
                local_tensor(param.grad).masked_fill_(mask, 0.0)


def split_frozen(units: SkillUnits, frozen: torch.Tensor) -> FrozenSplit:
    trainable: list[torch.nn.Parameter] = []
    masks: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    fully = 0
    for tensor in units.tensors:
        mask = tensor.broadcast(frozen.to(tensor.param.device))
        if bool(mask.all()):  # decided on the whole tensor: the same on every process
            fully += 1
            continue
        trainable.append(tensor.param)
        if bool(mask.any()):
            masks.append((tensor.param, local_part(mask.expand(tensor.param.shape), tensor.param).contiguous()))
    return FrozenSplit(trainable, masks, fully)


def masked_replay_steps(
    split: FrozenSplit,
    items: list[EncodedExample],
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    extra_loss: ExtraLoss = lambda: None,
    done: Callable[[StepStats], None] = lambda stats: None,
) -> ExtraSteps:
    """``epochs`` shuffled passes over ``items`` (pass ``e`` seeded ``seed * 100 + e``), frozen units fixed."""
    plan = BatchPlan(passes(items, batch_size, epochs, seed, "replay"), seed)
    return ExtraSteps(
        name="kif-m masked replay",
        plan=plan,
        parameters=split.trainable,
        lr=lr,
        edit_gradients=split.zero_frozen_gradients,
        extra_loss=extra_loss,
        done=done,
    )
