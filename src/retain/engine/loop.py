"""The training loop of one phase, on Accelerate, with the method hooks in their places.

Order within an optimizer step (``grad_accum`` micro-batches):

    for each micro-batch: on_batch_start -> forward -> base loss -> on_loss (chained) -> backward
    after the last micro-batch: on_backward_end (gradient edits) -> clip -> step -> on_step_end -> zero_grad

The micro-batches come from the phase's batch plan (:mod:`retain.methods.common.batch_plan`),
built and extended by the methods before the loop starts, so its length is known up front.
A method's extra steps at the end of a phase (:class:`~retain.methods.base.ExtraSteps`) run
through :func:`run_extra_steps`, the same step on a plan of their own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import torch
from tqdm.auto import tqdm

from retain.engine.context import RunContext
from retain.engine.hooks import HookDispatcher
from retain.methods.base import ExtraSteps, StepStats
from retain.methods.common.batch_plan import BatchPlan, PlannedBatch, Shard, phase_seed


def process_shard(ctx: RunContext) -> Shard:
    return Shard(ctx.accelerator.process_index, ctx.accelerator.num_processes)


def new_task_plan(ctx: RunContext) -> BatchPlan:
    """The phase's own training data: ``train.epochs`` shuffled passes, seeded by the phase."""
    train = ctx.config.train
    seed = phase_seed(ctx.config.seed, ctx.state.phase_index)
    return BatchPlan.over_epochs(ctx.phase_train_examples(), train.batch_size, train.epochs, seed, process_shard(ctx))


def _micro_batch(ctx: RunContext, planned: PlannedBatch):  # type: ignore[no-untyped-def]
    return ctx.encoder.collate(planned.items, source=planned.source, label_space=ctx.encoder.train_label_space).to(ctx.device)


def _steps(
    ctx: RunContext,
    plan: BatchPlan,
    optimizer: torch.optim.Optimizer,
    loss_of: Callable[..., torch.Tensor],
    before_clip: Callable[[], None],
    after_step: Callable[[], None],
    clip_parameters: list[torch.nn.Parameter],
    progress: Optional[tqdm] = None,
) -> list[float]:
    """The optimizer steps over ``plan``; returns the loss of each micro-batch."""
    accelerator, model = ctx.accelerator, ctx.model
    max_norm = ctx.config.train.max_grad_norm
    losses: list[float] = []
    for planned in plan:
        batch = _micro_batch(ctx, planned)
        with accelerator.accumulate(model):
            loss = loss_of(batch)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                before_clip()
                if max_norm is not None:
                    accelerator.clip_grad_norm_(clip_parameters, max_norm)
            optimizer.step()
            if accelerator.sync_gradients:
                after_step()
            optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach().float().item())
        if progress is not None:
            progress.update(1)
            if len(losses) % 10 == 0:
                progress.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.4f}")
    return losses


def train_phase(ctx: RunContext, hooks: HookDispatcher, plan: BatchPlan, show_progress: bool = True) -> dict[str, float]:
    """Train the current phase on ``plan``; returns simple statistics (mean loss, steps)."""
    state = ctx.state
    optimizer = ctx.optimizer
    assert optimizer is not None
    ctx.model.train()
    state.step_in_phase = 0
    progress = tqdm(
        total=len(plan),
        desc=f"task {state.phase_index + 1}/{len(state.phases)} {state.phase.name}",
        disable=not show_progress or not ctx.accelerator.is_local_main_process,
        leave=True,
        dynamic_ncols=True,
    )

    def loss_of(batch):  # type: ignore[no-untyped-def]
        hooks.call("on_batch_start", ctx, batch)
        outputs = ctx.forward(batch)
        return hooks.call("on_loss", ctx, batch, outputs, ctx.base_loss(batch, outputs))

    def after_step() -> None:
        if ctx.scheduler is not None:
            ctx.scheduler.step()
        state.global_step += 1
        state.step_in_phase += 1
        hooks.call("on_step_end", ctx)

    losses = _steps(
        ctx, plan, optimizer, loss_of, lambda: hooks.call("on_backward_end", ctx), after_step,
        list(ctx.model.parameters()), progress,
    )
    progress.close()
    return {"mean_loss": sum(losses) / max(1, len(losses)), "micro_batches": len(losses), "steps": state.step_in_phase}


def run_extra_steps(ctx: RunContext, extra: ExtraSteps) -> StepStats:
    """A method's extra optimizer steps (e.g. KIF-M's masked replay), through the same step.

    A fresh AdamW over ``extra.parameters`` with no weight decay and a constant learning rate;
    the model's gradients are cleared after each step, including those of tensors the optimizer
    does not hold.
    """
    train = ctx.config.train
    if not extra.parameters or not len(extra.plan):
        return StepStats(0, 0, 0.0)
    optimizer = ctx.accelerator.prepare_optimizer(
        torch.optim.AdamW(extra.parameters, lr=extra.lr, betas=tuple(train.betas), weight_decay=0.0)
    )
    ctx.accelerator.step = 0
    ctx.accelerator.gradient_state._set_sync_gradients(True)
    ctx.model.train()
    steps = 0

    def loss_of(batch):  # type: ignore[no-untyped-def]
        loss = ctx.base_loss(batch, ctx.forward(batch))
        added = extra.extra_loss()
        return loss if added is None else loss + added

    def after_step() -> None:
        nonlocal steps
        steps += 1
        ctx.unwrapped_model().zero_grad(set_to_none=True)

    losses = _steps(ctx, extra.plan, optimizer, loss_of, extra.edit_gradients, after_step, extra.parameters)
    ctx.unwrapped_model().zero_grad(set_to_none=True)  # an unfinished accumulation window
    return StepStats(steps, len(losses), sum(losses) / max(1, len(losses)))
