"""Evaluation of every task of the stream (and the general-ability sets) at one point of a run."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from retain.engine.context import RunContext
from retain.engine.collective import gather_objects
from retain.engine.progress import progress_bar
from retain.evaluation.scoring import TaskScore, discarded_batches, forward_batches, merge_shares, score_task, scoring_path
from retain.models.kinds import eval_mode


@dataclass
class EvaluationRow:
    #: one score per task; None where the task was not scored (see ``only``)
    scores: list[Optional[float]]
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    examples_per_second: float = 0.0
    #: class-incremental scores of the same model (classifier scored within task labels), else None
    union_scores: Optional[list[Optional[float]]] = None
    #: wall time of the whole row (encoding and scoring)
    seconds: float = 0.0


def evaluate_tasks(
    ctx: RunContext, tasks: list[Any], split_cache_offset: int = 0, only: Optional[Sequence[int]] = None,
    name: str = "eval",
) -> EvaluationRow:
    """Score ``tasks`` with the current model in eval mode; restores train mode afterwards.

    ``only``: positions in ``tasks`` to score (None: all); the others get None in the row.
    ``name``: the progress bar's label (the bar counts examples, the task being scored beside it).
    """
    model = ctx.unwrapped_model()
    started = time.perf_counter()
    with eval_mode(model):
        row = _evaluate(ctx, model, tasks, split_cache_offset, only, name)
    row.seconds = time.perf_counter() - started
    return row


def model_device(model: Any, fallback: torch.device) -> torch.device:
    """Where the model's weights are, so scoring inputs go there.

    Usually the accelerator's device, but not always: under FSDP the model is prepared (sharded and
    moved) when the first task starts, so before that it is on the CPU while the accelerator's
    device is a GPU (seen on an H200). The runner moves it for the "before training" row
    (:func:`on_scoring_device`); this keeps any other early scoring consistent. ``fallback`` for a
    model without parameters."""
    first = next(iter(model.parameters()), None)
    return first.device if first is not None else fallback


@contextlib.contextmanager
def on_scoring_device(model: Any, device: torch.device) -> Iterator[None]:
    """The model on ``device`` for the scoring inside, then back where it was.

    For the rows scored before the first preparation: under FSDP the model stays on the CPU until
    the first task prepares (shards and moves) it, so the "before training" row would be scored
    on every process's CPU, far too slow for a large model. It is scored on the accelerator's
    device instead, as every later row is (those gather the full parameters there, so the peak
    memory is the same), and put back, so the preparation finds the model as it always does.
    A no-op where the model already is on ``device``.
    """
    where = model_device(model, device)
    if where == device:
        yield
        return
    model.to(device)
    try:
        yield
    finally:
        model.to(where)


def forwards_gather_parameters(model: Any) -> bool:
    """Whether a forward of ``model`` all-gathers its parameters, a collective that every process
    must enter as often as the others: FSDP2 shards (DTensor parameters; inside
    :func:`~retain.engine.sharding.full_parameters` they are the full plain tensors) or ZeRO-3
    partitions not gathered (a DeepSpeed status other than available)."""
    from torch.distributed.tensor import DTensor

    for parameter in model.parameters():
        if isinstance(parameter, DTensor):
            return True
        status = getattr(parameter, "ds_status", None)
        if status is not None and getattr(status, "name", "") != "AVAILABLE":
            return True
    return False


def share_positions(count: int, world: int, rank: int) -> list[int]:
    """The positions of a set of ``count`` examples that process ``rank`` of ``world`` scores:
    every ``world``-th, so shares differ in size by at most one example."""
    return list(range(rank, count, world))


def pad_batches(path: str, count: int, world: int, rank: int, batch_size: int, num_labels: int = 0) -> int:
    """The batches process ``rank`` runs on top of its share of ``count`` examples so that it runs
    as many as the largest share (process 0's) on scoring ``path``: 0 or 1 (shares differ by at
    most one example, so by at most one batch). See :func:`_score_shared` for when."""
    largest = forward_batches(path, len(share_positions(count, world, 0)), batch_size, num_labels)
    return largest - forward_batches(path, len(share_positions(count, world, rank)), batch_size, num_labels)


def _score_shared(ctx: RunContext, model: Any, task: Any, items: list[Any]) -> TaskScore:
    """Score one task, each process scoring every n-th example; the shares are gathered and
    merged once, so every process gets the single-process score in 1/n of the time.

    Shares differ by up to one example, so processes may run different numbers of batches and,
    in generation, of tokens. That is safe only where a forward holds no collective. The engine
    scores inside ``full_parameters`` (every parameter gathered once before the row), where it
    is so; there ``generate`` is told so (``synced_gpus`` off). Left to itself, ``generate``
    turns synchronisation on for any FSDP-managed module, gathered or not, and then all-reduces
    once per token: the process with the extra batch waited there while the other had gone on
    to gather the shares (2 FSDP processes, 9 examples, batch 4: a hang at the first row).

    Where a forward does all-gather (sharded parameters, not gathered: a caller outside
    ``full_parameters``), every process must run as many forwards: generation is synchronised
    per token, and a process whose share has a batch fewer runs one more, a one-example batch of
    the set's first example whose result is dropped (:func:`pad_batches`,
    :func:`~retain.evaluation.scoring.discarded_batches`). Padding costs no wall time (the
    process would wait for the others anyway) and leaves the scores those of one process. It is
    not done on gathered parameters, where it would only add work.
    """
    accelerator = ctx.accelerator
    world, rank = accelerator.num_processes, accelerator.process_index
    positions = share_positions(len(items), world, rank) if world > 1 else list(range(len(items)))
    if world > 1 and task.eval and ctx.config.eval.max_new_tokens is None and ctx.encoder.kind != "classifier":
        # The generation budget depends on the longest target of the whole set: fix it here, so
        # that a share does not stop its answers earlier than one process would.
        budget: Optional[int] = max(len(ctx.encoder.target_tokens(it)) for it in items) + 2
    else:
        budget = ctx.config.eval.max_new_tokens
    lockstep = world > 1 and forwards_gather_parameters(model)
    device = model_device(model, ctx.device)
    batch_size, scoring = ctx.config.eval.batch_size, ctx.config.eval.scoring
    started = time.perf_counter()
    share = score_task(
        model, ctx.encoder, task, [items[i] for i in positions], [task.eval[i] for i in positions],
        batch_size, device, scoring=scoring, max_new_tokens=budget, synced_gpus=lockstep,
    )
    if world <= 1:
        return share
    if lockstep and items:
        path = scoring_path(ctx.encoder, task, scoring)
        pads = pad_batches(path, len(items), world, rank, batch_size, len(task.labels or []))
        discarded_batches(model, ctx.encoder, task, items[0], pads, device, scoring, budget or 1, synced_gpus=True)
    elapsed = time.perf_counter() - started
    shares = gather_objects(accelerator, (positions, share, elapsed))
    return merge_shares([(p, s) for p, s, _ in shares], len(items), max(e for _, _, e in shares), task.metric)


def _evaluate(
    ctx: RunContext, model: Any, tasks: list[Any], split_cache_offset: int, only: Optional[Sequence[int]], name: str
) -> EvaluationRow:
    selected = set(range(len(tasks)) if only is None else only)
    bar = progress_bar(ctx.show_progress, sum(len(tasks[i].eval) for i in selected if i < len(tasks)), name)
    scores: list[Optional[float]] = []
    union_scores: list[Optional[float]] = []
    predictions: dict[str, list[dict[str, Any]]] = {}
    examples, seconds = 0, 0.0
    for offset, task in enumerate(tasks):
        if offset not in selected:
            scores.append(None)
            union_scores.append(None)
            continue
        index = split_cache_offset + offset
        bar.set_postfix_str(task.name)
        items = ctx.encoder.encode_task(task, index, "eval")
        result = _score_shared(ctx, model, task, items)
        scores.append(result.score)
        union_scores.append(result.union_score)
        predictions[task.name] = result.predictions
        examples += result.count
        seconds += result.count / max(result.examples_per_second, 1e-9)
        bar.update(len(task.eval))
    bar.close()
    scored = [union_scores[i] for i in sorted(selected) if i < len(tasks)]
    union = union_scores if scored and all(s is not None for s in scored) else None
    return EvaluationRow(scores, predictions, examples / max(seconds, 1e-9), union)
