"""Elastic Weight Consolidation (Kirkpatrick et al., 2017), online form (Schwarz et al., 2018).

After each task, a diagonal Fisher is estimated from that task's training data and the weights are
anchored; training on later tasks adds

    lam * sum_i F_i * (theta_i - theta*_i)^2          (no 1/2: the paper's lambda/2 is lam here)

over the trainable parameters (all weights under full fine-tuning, the adapters under LoRA).
Online accumulation: ``F <- gamma * F + F_task`` and ``theta* <- theta`` after every task, so one
Fisher and one anchor are kept however long the stream is (gamma = 1 sums the tasks' Fishers).

The Fisher is the empirical one: for each micro-batch of (up to ``fisher_samples``) training
examples, the gradient of the batch's mean task loss is squared, and the squares are averaged over
the batches. Batch-wise squares are cheaper than per-example ones by the batch size and are what
most LLM continual-learning code computes; the scale differs (roughly by 1/batch size), which the
choice of ``lam`` absorbs.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

import torch

from retain.config import option
from retain.engine.collective import sum_over_processes
from retain.engine.sharding import local_part, local_tensor
from retain.methods.base import CARRIES_KNOWLEDGE, Method
from retain.methods.registry import register_method
from retain.models.kinds import eval_mode

if TYPE_CHECKING:
    from retain.data.collate import MicroBatch
    from retain.engine.context import RunContext


@dataclass
class EwcParams:
    lam: float = option(
        "Penalty weight lambda in lam * sum F (theta - theta*)^2 (no 1/2; calibrated on MiniLM, batch 16).", 6.0e5,
        low=0.0,
    )
    gamma: float = option(
        "Online decay of the accumulated Fisher: F <- gamma F + F_task (1 = sum).", 1.0, low=0.0, high=1.0
    )
    fisher_samples: Optional[int] = option(
        "Training examples (seeded sample) used for the Fisher; null = all.", None, low=1
    )
    fisher_batch_size: Optional[int] = option(
        "Micro-batch size of the Fisher pass; null = train.batch_size.", None, low=1
    )


Tensors = dict[str, torch.Tensor]


def ewc_penalty(parameters: Iterable[tuple[str, torch.Tensor]], fisher: Tensors, anchor: Tensors) -> torch.Tensor:
    """sum_i F_i (theta_i - theta*_i)^2 over the named parameters that have a Fisher entry.

    A parameter FSDP2 shards contributes the rows this process holds (the Fisher and anchor are
    full tensors): the gradient of the penalty lands on the local shard, once, as the gradient of
    the whole penalty would in one process; the value is this process's part of the sum.
    """
    total: Optional[torch.Tensor] = None
    for name, theta in parameters:
        if name not in fisher or name not in anchor:
            continue
        local = local_tensor(theta)
        difference = local - local_part(anchor[name], theta)
        term = (local_part(fisher[name], theta) * difference.pow(2)).sum()
        total = term if total is None else total + term
    if total is None:
        return torch.zeros(())
    return total


def squared_gradient_sums(
    parameters: list[tuple[str, torch.Tensor]], batch_losses: Iterable[torch.Tensor]
) -> tuple[list[torch.Tensor], int]:
    """Sum over batches of the squared gradient of each batch's loss (fp32), and the batch count.

    Gradients come from ``torch.autograd.grad``, so nothing is left in ``.grad``. Sums (not means)
    so that the shares of several processes add up to the single-process pass.
    """
    tensors = [p for _, p in parameters]
    sums = [torch.zeros_like(p, dtype=torch.float32) for p in tensors]
    count = 0
    for loss in batch_losses:
        grads = torch.autograd.grad(loss, tensors, allow_unused=True)
        for total, grad in zip(sums, grads):
            if grad is not None:
                total.add_(grad.detach().float().pow(2))
        count += 1
    return sums, count


def empirical_fisher(parameters: list[tuple[str, torch.Tensor]], batch_losses: Iterable[torch.Tensor]) -> Tensors:
    """Mean over batches of the squared gradient of each batch's loss (fp32, detached)."""
    sums, count = squared_gradient_sums(parameters, batch_losses)
    return {name: total / max(1, count) for (name, _), total in zip(parameters, sums)}


def accumulate_fisher(previous: Tensors, new: Tensors, gamma: float) -> Tensors:
    """Online EWC: ``gamma * F_previous + F_new`` (entries only in one of them are kept as they are)."""
    merged = {name: value.clone() for name, value in new.items()}
    for name, value in previous.items():
        if name in merged:
            merged[name] += gamma * value.to(merged[name].device)
        else:  # a tensor no longer trained (e.g. an earlier task's frozen adapter)
            merged[name] = gamma * value
    return merged


@register_method
class EWC(Method):
    name = "ewc"
    summary = "Elastic Weight Consolidation: lam * sum F (theta - theta*)^2, online diagonal Fisher."
    params_class = EwcParams
    #: FSDP: the Fisher pass runs on gathered parameters, the penalty on each process's rows.
    #: DeepSpeed: its engine owns the gradients (flat partitioned buffers), and the penalty needs
    #: the parameters themselves inside the loss, which ZeRO-3 partitions out of the module.
    distributed = ("no", "multi_gpu", "fsdp")
    distributed_refusals = {
        "zero2": "EWC's penalty and Fisher need per-parameter tensors; DeepSpeed keeps gradients in flat partitioned buffers",
        "zero3": "EWC's penalty reads every parameter inside the loss; ZeRO-3 partitions them out of the module",
    }
    capabilities = frozenset({CARRIES_KNOWLEDGE})
    test_params = {"lam": 100.0}

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        self.fisher: Tensors = {}
        self.anchor: Tensors = {}
        self._on_device: Optional[torch.device] = None

    # -- the penalty -----------------------------------------------------------------------

    def on_phase_start(self, ctx: "RunContext") -> None:
        if self.fisher and self._on_device != ctx.device:
            self.fisher = {n: t.to(ctx.device) for n, t in self.fisher.items()}
            self.anchor = {n: t.to(ctx.device) for n, t in self.anchor.items()}
            self._on_device = ctx.device

    def on_loss(self, ctx: "RunContext", batch: "MicroBatch", outputs: Any, loss: torch.Tensor) -> torch.Tensor:
        if not self.fisher or self.params.lam == 0:
            return loss
        term = self.params.lam * ewc_penalty(ctx.trainable_parameters(), self.fisher, self.anchor)
        ctx.add_shard_term(term)  # sharded, its gradient lands on this process's rows only
        return loss + term

    # -- the Fisher ------------------------------------------------------------------------

    def _fisher_items(self, ctx: "RunContext") -> list[Any]:
        items = ctx.phase_train_examples()
        cap = self.params.fisher_samples
        if cap is None or cap >= len(items):
            return items
        chosen = random.Random(f"{ctx.config.seed}-ewc-{ctx.state.phase_index}").sample(range(len(items)), cap)
        return [items[i] for i in sorted(chosen)]

    def on_phase_end(self, ctx: "RunContext") -> None:
        parameters = ctx.trainable_parameters()
        size = self.params.fisher_batch_size or ctx.config.train.batch_size
        # Each process takes its share of the same batches; the sums and the count are added up
        # over processes once, so the Fisher is the single-process one for any process count.
        batches = ctx.iterate_batches(self._fisher_items(ctx), batch_size=size, shard=True, progress="ewc: Fisher")
        model = ctx.pass_model()
        # eval mode, no dropout: the Fisher of the model that will be evaluated
        with eval_mode(model), torch.enable_grad():
            losses = (ctx.base_loss(batch, ctx.forward(batch, model=model)) for batch in batches)
            sums, count = squared_gradient_sums(parameters, losses)
        *sums, total_count = sum_over_processes(ctx.accelerator, [*sums, torch.tensor(float(count))])
        task_fisher = {name: value / max(1.0, float(total_count)) for (name, _), value in zip(parameters, sums)}
        self.fisher = accumulate_fisher(self.fisher, task_fisher, self.params.gamma)
        self.anchor = {name: p.detach().float().clone() for name, p in parameters}
        self._on_device = ctx.device
        total = sum(float(f.sum()) for f in task_fisher.values())
        ctx.logger.info("ewc: Fisher of %d tensors from task %s (sum %.4g)", len(task_fisher), ctx.state.phase.name, total)

    # -- state -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "fisher": {n: t.detach().to("cpu") for n, t in self.fisher.items()},
            "anchor": {n: t.detach().to("cpu") for n, t in self.anchor.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fisher = dict(state.get("fisher", {}))
        self.anchor = dict(state.get("anchor", {}))
        self._on_device = None

    def on_log(self) -> dict[str, float]:
        return {"ewc_fisher_sum": float(sum(float(f.sum()) for f in self.fisher.values()))}
