"""Per-task preparation: the model and a task's optimizer go through Accelerate together, and the
finished task's prepared objects are released.

Why per task and together: a method may unfreeze parameters when a task starts (O-LoRA's adapter
of the task; a method adds parameters only before the first preparation, which FSDP2 needs); a
data-parallel wrapper built before they trained would not all-reduce their gradients, and the
sharding back-ends (FSDP, DeepSpeed ZeRO) need the model and its optimizer in one ``prepare`` call.
Why release: Accelerate keeps every optimizer and model wrapper it prepared (``_optimizers``,
``_models``), so a per-task optimizer would otherwise keep its AdamW state alive for the whole run
(two fp32 copies of the trainable weights per task).

The learning-rate schedule is not handed to Accelerate: its wrapper steps a schedule once per
process at each optimizer step (it assumes the schedule was sized for one process), while the
engine sizes and steps it in optimizer steps, the same for any process count.
"""

from __future__ import annotations

from typing import Any

import torch


def bare_model(accelerator: Any, model: torch.nn.Module) -> torch.nn.Module:
    """``model`` without Accelerate's wrappers (data-parallel wrapper, mixed-precision forward).

    Restoring the plain forward matters before a second ``prepare``: Accelerate would otherwise
    wrap the already autocast forward once more each task.
    """
    inner = accelerator.unwrap_model(model, keep_fp32_wrapper=False)
    inner.__dict__.pop("_is_accelerate_prepared", None)
    return inner


def prepare_task(accelerator: Any, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
    """Prepare the (bare) model and the task's optimizer in one call; returns (model, optimizer)."""
    return accelerator.prepare(model, optimizer)


def release(accelerator: Any, *objects: Any) -> None:
    """Drop Accelerate's references to ``objects`` (prepared models, optimizers, schedulers).

    The caller drops its own; the optimizer's state is then freed with the last reference.
    """
    ids = {id(o) for o in objects if o is not None}
    for name in ("_optimizers", "_models", "_schedulers"):
        kept = [o for o in getattr(accelerator, name, []) if id(o) not in ids]
        setattr(accelerator, name, kept)


def optimizer_state_bytes(optimizers: list[Any]) -> int:
    """Bytes of the tensors held in the state of ``optimizers`` (Adam moments etc.)."""
    total = 0
    for optimizer in optimizers:
        inner = getattr(optimizer, "optimizer", optimizer)
        for state in inner.state.values():
            for value in state.values():
                if isinstance(value, torch.Tensor):
                    total += value.numel() * value.element_size()
    return total
