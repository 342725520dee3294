"""The training loop of one phase, on Accelerate, with the method hooks in their places.

Order within an optimizer step (``grad_accum`` micro-batches):

    for each micro-batch: forward -> base loss -> adjust_loss (each method) -> backward
    after the last micro-batch: after_backward (gradient edits) -> clip -> step -> after_step -> zero_grad
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Optional

import torch
from tqdm.auto import tqdm

from retain.data.collate import EncodedExample, MicroBatch
from retain.engine.context import RunContext
from retain.methods.base import Method


def new_task_batches(ctx: RunContext, epoch_seed: int) -> Iterator[MicroBatch]:
    """Shuffled micro-batches of the phase's own training data, epoch after epoch."""
    return epoch_batches(ctx, ctx.phase_train_examples(), epoch_seed)


def epoch_batches(ctx: RunContext, items: list[EncodedExample], epoch_seed: int) -> Iterator[MicroBatch]:
    """Shuffled micro-batches over ``items`` for ``train.epochs`` epochs (a fraction cuts the last)."""
    epochs = ctx.config.train.epochs
    full = int(math.floor(epochs))
    for epoch in range(full):
        yield from ctx.iterate_batches(items, shuffle=True, seed=epoch_seed * 1000 + epoch, shard=True)
    fraction = epochs - full
    if fraction > 0:
        per_process = math.ceil(len(items) / ctx.config.train.batch_size) // ctx.accelerator.num_processes
        count = int(round(fraction * per_process))
        for i, batch in enumerate(ctx.iterate_batches(items, shuffle=True, seed=epoch_seed * 1000 + full, shard=True)):
            if i >= count:
                break
            yield batch


def count_new_batches(ctx: RunContext, items: Optional[list[EncodedExample]] = None) -> int:
    """Micro-batches :func:`epoch_batches` yields for ``items`` (default: the phase's own data)."""
    count = len(items if items is not None else ctx.phase_train_examples())
    per_epoch = math.ceil(count / ctx.config.train.batch_size) // ctx.accelerator.num_processes
    epochs = ctx.config.train.epochs
    return int(math.floor(epochs)) * per_epoch + int(round((epochs - math.floor(epochs)) * per_epoch))


def scheduled_batches(ctx: RunContext, methods: list[Method], epoch_seed: int) -> Iterator[MicroBatch]:
    batches: Iterator[MicroBatch] = new_task_batches(ctx, epoch_seed)
    for method in methods:
        batches = method.batch_schedule(ctx, batches)
    return batches


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


def train_phase(ctx: RunContext, methods: list[Method], total_micro_batches: int, show_progress: bool = True) -> dict[str, float]:
    """Train the current phase; returns simple statistics (mean loss, steps)."""
    accelerator = ctx.accelerator
    model = ctx.model
    optimizer = ctx.optimizer
    assert optimizer is not None
    train = ctx.config.train
    model.train()
    ctx.step_in_phase = 0
    losses = LossTracker(accelerator.device)
    progress = tqdm(
        total=total_micro_batches,
        desc=f"task {ctx.phase_index + 1}/{len(ctx.phases)} {ctx.phase.name}",
        disable=not show_progress or not accelerator.is_local_main_process,
        leave=True,
        dynamic_ncols=True,
    )
    seed = ctx.config.seed * 7919 + ctx.phase_index
    micro = 0
    for batch in scheduled_batches(ctx, methods, seed):
        with accelerator.accumulate(model):
            outputs = ctx.forward(batch)
            loss = ctx.base_loss(batch, outputs)
            for method in methods:
                loss = method.adjust_loss(ctx, batch, outputs, loss)
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                for method in methods:
                    method.after_backward(ctx)
                if train.max_grad_norm is not None:
                    accelerator.clip_grad_norm_(model.parameters(), train.max_grad_norm)
            optimizer.step()
            if accelerator.sync_gradients:
                if ctx.scheduler is not None:
                    ctx.scheduler.step()
                ctx.global_step += 1
                ctx.step_in_phase += 1
                for method in methods:
                    method.after_step(ctx)
            optimizer.zero_grad(set_to_none=True)
        micro += 1
        losses.add(loss)
        progress.update(1)
        if micro % LOSS_READ_EVERY == 0:
            progress.set_postfix(loss=f"{losses.read_window():.4f}")
    progress.close()
    return {"mean_loss": losses.mean(), "micro_batches": micro, "steps": ctx.step_in_phase}


@torch.no_grad()
def zero_grads(model: torch.nn.Module) -> None:
    for p in model.parameters():
        p.grad = None
