"""Statistics passes divided over data-parallel processes, and their results put back together.

A pass over examples that produces a statistic (EWC's Fisher, SEEKR's importance and teacher
signals, LwF's and DER's teacher logits, evaluation) runs each process on its share of the
batches and then combines once: sums are all-reduced, per-example results are gathered. So N
processes do 1/N of the work each, and the result is the single-process one, whatever N.

Passes run on the bare model (``RunContext.pass_model``): its forward holds no collective, so
processes may run different numbers of batches (a share differs by at most one batch).
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

T = TypeVar("T")


def gather_objects(accelerator: Any, obj: T) -> list[T]:
    """``obj`` of every process, in process order (a one-element list in a single process)."""
    if accelerator.num_processes <= 1:
        return [obj]
    from accelerate.utils import gather_object

    return list(gather_object([obj]))


def merge_dicts(accelerator: Any, mapping: dict[Any, T]) -> dict[Any, T]:
    """The union of every process's ``mapping`` (keys are disjoint: each example has one owner)."""
    if accelerator.num_processes <= 1:
        return mapping
    merged: dict[Any, T] = {}
    for part in gather_objects(accelerator, mapping):
        merged.update(part)
    return merged


def sum_over_processes(accelerator: Any, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    """Each tensor summed over processes (one all-reduce for the list), on its own device and dtype."""
    if accelerator.num_processes <= 1 or not tensors:
        return tensors
    flat = torch.cat([t.detach().reshape(-1).to(accelerator.device, torch.float64 if accelerator.device.type == "cpu" else torch.float32) for t in tensors])
    flat = accelerator.reduce(flat, reduction="sum")
    out, start = [], 0
    for t in tensors:
        out.append(flat[start : start + t.numel()].reshape(t.shape).to(t.device, t.dtype))
        start += t.numel()
    return out


def end_process_group(finished: bool = True) -> None:
    """Destroy the process group, if there is one: for the owner of the process (the CLI, a
    launched script) on its way out. Not called by ``retain.run``: a caller's group is the caller's.

    Left to interpreter exit, a gloo group's threads are torn down unjoined and the process can
    abort ("terminate called without an active exception") after its work is done, failing the
    launch. ``finished`` (every process reached the end of the same work) first waits for every
    process, so that no process tears down its side while a peer is still mid-collective or
    still writing, and no pending work is left to a destructor; a process leaving on an error
    skips that wait, which could hang on a peer that will never arrive. Any garbage that still
    holds the group is then collected while the interpreter is whole, not during its shutdown.
    """
    import gc

    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if finished:
        dist.barrier()
    dist.destroy_process_group()
    gc.collect()
