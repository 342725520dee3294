"""KIF-M's post-fusion replay phase: train on earlier tasks' buffer with some units frozen.

The frozen units must come out of the phase bit-identical, by construction rather than by luck:

- tensors whose units are all frozen are left out of the optimizer;
- partially frozen tensors (a LoRA A or B with some frozen ranks) get their frozen slices'
  gradients set to +0.0 before clipping and every step, and the optimizer is a fresh AdamW with
  ``weight_decay=0``: its moments of those slices stay exactly 0, so each update there is
  ``-lr * 0 / (sqrt(0) + eps) = -0.0`` and ``w + -0.0 == w`` (a carried optimizer's moments or any
  weight decay would move weights whose gradient is zero).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import torch

from retain.data.collate import EncodedExample, MicroBatch
from retain.methods.kif.skill_units import SkillUnits

if TYPE_CHECKING:
    from retain.engine.context import RunContext

ExtraLoss = Callable[[], Optional[torch.Tensor]]


@dataclass
class ReplayPhaseStats:
    steps: int
    examples: int
    mean_loss: float
    frozen_tensors: int
    partially_frozen_tensors: int


def _split_frozen(units: SkillUnits, frozen: torch.Tensor) -> tuple[list[torch.nn.Parameter], list[tuple[torch.nn.Parameter, torch.Tensor]], int]:
    """(parameters to optimise, (parameter, bool mask of its frozen elements) pairs, fully frozen count)."""
    trainable: list[torch.nn.Parameter] = []
    masks: list[tuple[torch.nn.Parameter, torch.Tensor]] = []
    fully = 0
    for tensor in units.tensors:
        mask = tensor.broadcast(frozen.to(tensor.param.device))
        if bool(mask.all()):
            fully += 1
            continue
        trainable.append(tensor.param)
        if bool(mask.any()):
            masks.append((tensor.param, mask.expand_as(tensor.param)))
    return trainable, masks, fully


def masked_replay(
    ctx: "RunContext",
    units: SkillUnits,
    frozen: torch.Tensor,
    items: list[EncodedExample],
    lr: float,
    epochs: int,
    batch_size: int,
    seed: int,
    extra_loss: Optional[ExtraLoss] = None,
) -> ReplayPhaseStats:
    """Train ``epochs`` passes over ``items`` with the ``frozen`` units held fixed."""
    trainable, masks, fully = _split_frozen(units, frozen)
    model = ctx.model
    if not trainable or not items:
        return ReplayPhaseStats(0, len(items), 0.0, fully, len(masks))
    optimizer = torch.optim.AdamW(trainable, lr=lr, betas=tuple(ctx.config.train.betas), weight_decay=0.0)
    max_norm = ctx.config.train.max_grad_norm
    model.train()
    losses: list[float] = []
    for epoch in range(epochs):
        batch: MicroBatch
        for batch in ctx.iterate_batches(items, batch_size=batch_size, shuffle=True, seed=seed * 100 + epoch, source="replay"):
            outputs = ctx.forward(batch)
            loss = ctx.base_loss(batch, outputs)
            extra = extra_loss() if extra_loss is not None else None
            if extra is not None:
                loss = loss + extra
            loss.backward()
            for param, mask in masks:
                if param.grad is not None:
                    param.grad.masked_fill_(mask, 0.0)
            if max_norm is not None:
                torch.nn.utils.clip_grad_norm_(trainable, max_norm)
            optimizer.step()
            ctx.unwrapped_model().zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
    return ReplayPhaseStats(len(losses), len(items), sum(losses) / max(1, len(losses)), fully, len(masks))
