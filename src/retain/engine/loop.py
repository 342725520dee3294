"""The training loop of one phase, on Accelerate, with the method hooks in their places.

Order within an optimizer step (``grad_accum`` micro-batches):

    for each micro-batch: on_batch_start -> forward -> base loss -> on_loss (chained) -> backward
    after the last micro-batch: on_backward_end (gradient edits) -> clip -> step -> on_step_end -> zero_grad

The micro-batches come from the phase's batch plan (:mod:`retain.methods.common.batch_plan`),
built and extended by the methods before the loop starts, so its length is known up front; the
loop runs this process's share of it (:func:`local_plan`). A last accumulation window shorter
than ``grad_accum`` still steps (its loss scaled by ``1 / grad_accum`` as every micro-batch's
is), so no planned micro-batch is left out of the update and a data-parallel step is the
single-process step with ``grad_accum * processes``.
A method's extra steps at the end of a phase (:class:`~retain.methods.base.ExtraSteps`) run
through :func:`run_extra_steps`, the same step on a plan of their own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Optional

import torch
from accelerate.utils import DistributedType
from tqdm.auto import tqdm

from retain.engine.accelerate_private import start_accumulation_window, step_at_next_micro_batch
from retain.engine.context import RunContext
from retain.engine.grad_norms import GradNormWatch
from retain.engine.hooks import HookDispatcher
from retain.engine.preparation import release
from retain.engine.progress import progress_bar
from retain.engine.sharding import is_sharded, sharded_steps
from retain.engine.step_log import StepLog
from retain.methods.base import ExtraSteps, StepStats
from retain.methods.common.batch_plan import BatchPlan, PlannedBatch, Shard, phase_seed


def process_shard(ctx: RunContext) -> Shard:
    return Shard(ctx.accelerator.process_index, ctx.accelerator.num_processes)


def new_task_plan(ctx: RunContext) -> BatchPlan:
    """The phase's own training data: ``train.epochs`` (or its task's ``train.task_epochs``)
    shuffled passes, seeded by the phase."""
    seed = phase_seed(ctx.config.seed, ctx.state.phase_index)
    return BatchPlan.over_epochs(ctx.phase_train_examples(), ctx.config.train.batch_size, ctx.phase_epochs(), seed)


def local_plan(ctx: RunContext, plan: BatchPlan) -> BatchPlan:
    """This process's micro-batches of the (whole-run) ``plan``, padded to equal counts."""
    return plan.for_process(process_shard(ctx))


def optimizer_steps(micro_batches: int, grad_accum: int) -> int:
    """Optimizer steps over ``micro_batches`` (a short last window steps too)."""
    return max(1, -(-micro_batches // grad_accum))


def weighted_loss(loss: torch.Tensor, planned: PlannedBatch, shard_terms: Optional[torch.Tensor]) -> torch.Tensor:
    """What a micro-batch back-propagates: its loss times its weight (0 for a pad), except for the
    terms on parameter shards in it (``shard_terms``, also inside ``loss``), which are weighted by
    the mean weight over processes instead (:meth:`~retain.engine.context.RunContext.add_shard_term`)."""
    weighted = loss if planned.weight == 1.0 else loss * planned.weight
    if shard_terms is not None and planned.weight_over_processes != planned.weight:
        weighted = weighted + shard_terms * (planned.weight_over_processes - planned.weight)
    return weighted


def _micro_batch(ctx: RunContext, planned: PlannedBatch):  # type: ignore[no-untyped-def]
    return ctx.encoder.collate(planned.items, source=planned.source, label_space=ctx.encoder.train_label_space).to(ctx.device)


#: Micro-batches between reads of the loss back to the host (the progress bar's refresh).
LOSS_READ_EVERY = 10


class LossTracker:
    """Loss statistics kept on the device and read back every :data:`LOSS_READ_EVERY` micro-batches.

    ``loss.item()`` after every micro-batch forces a device sync per step on a GPU; adding the
    detached loss into a device tensor does not. The sum is kept in float64 (where the device has
    it) so the mean equals the host-side sum of per-batch floats it replaces.
    """

    def __init__(self, device: torch.device) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64
        self.total = torch.zeros((), dtype=dtype, device=device)
        self.window = torch.zeros((), dtype=dtype, device=device)
        self.count = 0
        self.window_count = 0

    def add(self, loss: torch.Tensor) -> None:
        value = loss.detach().to(self.total.dtype)
        self.total += value
        self.window += value
        self.count += 1
        self.window_count += 1

    def read_window(self) -> float:
        """Mean loss since the last read (one host sync), and start a new window."""
        value = self.window.item() / max(1, self.window_count)
        self.window.zero_()
        self.window_count = 0
        return value

    def mean(self) -> float:
        return self.total.item() / max(1, self.count)


def _steps(
    ctx: RunContext,
    plan: BatchPlan,
    optimizer: torch.optim.Optimizer,
    loss_of: Callable[..., torch.Tensor],
    before_clip: Callable[[], None],
    after_step: Callable[[], None],
    clip_parameters: list[torch.nn.Parameter],
    progress: Optional[tqdm] = None,
    record_norm: Optional[Callable[[Optional[torch.Tensor], set[str]], None]] = None,
) -> LossTracker:
    """The optimizer steps over ``plan``; returns the micro-batches' loss statistics.

    ``record_norm``: called after each step's clipping with the total gradient norm before it
    (None where the backend does not report it) and the sources of the step's micro-batches;
    without clipping the norm is measured only when this is given.
    """
    accelerator, model = ctx.accelerator, ctx.model
    on_shards = is_sharded(model)  # only then are methods' shard terms re-weighted (RunContext.add_shard_term)
    max_norm = ctx.config.train.max_grad_norm
    losses = LossTracker(accelerator.device)
    last = len(plan) - 1
    sources: set[str] = set()
    for position, planned in enumerate(plan):
        batch = _micro_batch(ctx, planned)
        if planned.weight:
            sources.add(planned.source)
        if position == last:  # the last window steps even when short (see the module docstring)
            step_at_next_micro_batch(accelerator)
        with accelerator.accumulate(model):
            loss = loss_of(batch)
            shard_terms = ctx.take_shard_terms()
            accelerator.backward(weighted_loss(loss, planned, shard_terms if on_shards else None))
            if accelerator.sync_gradients:
                before_clip()
                norm = None
                if max_norm is not None or record_norm is not None:
                    # an infinite bound measures the norm and scales nothing
                    norm = accelerator.clip_grad_norm_(clip_parameters, max_norm if max_norm is not None else math.inf)
                if record_norm is not None:
                    # DeepSpeed clips inside its step and reports the previous step's norm: none here
                    record_norm(None if accelerator.distributed_type == DistributedType.DEEPSPEED else norm, sources)
                sources = set()
            optimizer.step()
            if accelerator.sync_gradients:
                after_step()
            optimizer.zero_grad(set_to_none=True)
        if planned.weight:  # a pad's loss is not the model's
            losses.add(loss)
        if progress is not None:
            progress.update(1)
            if losses.count % LOSS_READ_EVERY == 0:
                progress.set_postfix(loss=f"{losses.read_window():.4f}")
    return losses


def train_phase(
    ctx: RunContext, hooks: HookDispatcher, plan: BatchPlan, show_progress: bool = True, step_log: Optional[StepLog] = None
) -> dict[str, Any]:
    """Train the current phase on ``plan``; returns simple statistics (mean loss, steps, and the
    mean gradient norm before clipping per batch source, where the backend reports it).

    ``step_log``: where the loss, learning rate, gradient norm and methods' loss terms go for the
    trackers.
    """
    state = ctx.state
    optimizer = ctx.optimizer
    assert optimizer is not None
    ctx.model.train()
    state.step_in_phase = 0
    progress = progress_bar(
        show_progress and ctx.show_progress, len(plan), f"task {state.phase_index + 1}/{len(state.phases)} {state.phase.name}",
        leave=True,
    )

    logging = step_log is not None and step_log.enabled
    norms = GradNormWatch()

    def record_norm(norm: Optional[torch.Tensor], sources: set[str]) -> None:
        norms.add(norm, sources)
        if logging:
            step_log.add_grad_norm(norm, sources)

    weights = iter([planned.weight for planned in plan])  # loss_of runs once per planned batch, in order

    def loss_of(batch):  # type: ignore[no-untyped-def]
        hooks.call("on_batch_start", ctx, batch)
        outputs = ctx.forward(batch)
        if not logging:
            return hooks.call("on_loss", ctx, batch, outputs, ctx.base_loss(batch, outputs))
        loss, terms = hooks.chain_with_terms("on_loss", ctx, batch, outputs, ctx.base_loss(batch, outputs))
        step_log.add(loss, terms, weight=next(weights))  # a pad's loss is not the model's
        return loss

    def after_step() -> None:
        if logging:  # before the scheduler moves it: the rate of the step just taken
            step_log.step_done(state.global_step + 1, optimizer)
        if ctx.scheduler is not None:
            ctx.scheduler.step()
        state.global_step += 1
        state.step_in_phase += 1
        hooks.call("on_step_end", ctx)

    losses = _steps(
        ctx, plan, optimizer, loss_of, lambda: hooks.call("on_backward_end", ctx), after_step,
        list(ctx.model.parameters()), progress,
        record_norm if logging or ctx.config.train.max_grad_norm is not None else None,
    )
    progress.close()
    if logging:
        step_log.step_done(state.global_step, optimizer, force=True)  # the phase's last steps
    return {
        "mean_loss": losses.mean(), "micro_batches": losses.count, "steps": state.step_in_phase,
        "grad_norms": norms.means(),
    }


def run_extra_steps(ctx: RunContext, extra: ExtraSteps) -> StepStats:
    """A method's extra optimizer steps (e.g. KIF-M's masked replay), through the same step.

    The plan is divided over processes as a phase's is (:func:`local_plan`). The steps come from
    a phase's end, inside ``full_parameters``; under FSDP they run on the sharded model with its
    collectives on (:func:`~retain.engine.sharding.sharded_steps`), as the phase's own steps do.

    A fresh AdamW over ``extra.parameters`` with no weight decay and a constant learning rate;
    the model's gradients are cleared after each step, including those of tensors the optimizer
    does not hold.
    """
    train = ctx.config.train
    if not extra.parameters or not len(extra.plan):
        return StepStats(0, 0, 0.0)
    plan = local_plan(ctx, extra.plan)
    optimizer = ctx.accelerator.prepare_optimizer(
        torch.optim.AdamW(extra.parameters, lr=extra.lr, betas=tuple(train.betas), weight_decay=0.0)
    )
    start_accumulation_window(ctx.accelerator)
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

    bar = progress_bar(ctx.show_progress, len(plan), extra.name)
    with sharded_steps(ctx.unwrapped_model()):
        losses = _steps(ctx, plan, optimizer, loss_of, extra.edit_gradients, after_step, extra.parameters, bar)
    bar.close()
    ctx.unwrapped_model().zero_grad(set_to_none=True)  # an unfinished accumulation window
    release(ctx.accelerator, optimizer)  # its moments are not needed past these steps
    return StepStats(steps, losses.count, losses.mean())
