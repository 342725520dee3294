"""Optimizer and learning-rate schedule of a phase."""

from __future__ import annotations

from typing import Any

import torch
from transformers import get_scheduler

from retain.config import TrainConfig


def build_optimizer(parameters: list[torch.nn.Parameter], train: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    groups = [
        {"params": decay, "weight_decay": train.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=train.lr, betas=tuple(train.betas))


def warmup_steps(train: TrainConfig, total_steps: int) -> int:
    """``warmup_steps`` when set, else ``warmup_ratio`` of the task's optimizer steps (rounded)."""
    return train.warmup_steps or round(train.warmup_ratio * total_steps)


def build_scheduler(optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int) -> Any:
    name = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}[train.scheduler]
    return get_scheduler(
        name, optimizer, num_warmup_steps=warmup_steps(train, total_steps), num_training_steps=max(1, total_steps)
    )
