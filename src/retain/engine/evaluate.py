"""Evaluation of every task of the stream (and the general-ability sets) at one point of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from retain.engine.context import RunContext
from retain.evaluation.scoring import TaskScore, score_task
from retain.models.kinds import eval_mode


@dataclass
class EvaluationRow:
    scores: list[float]
    predictions: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    examples_per_second: float = 0.0
    #: class-incremental scores of the same model (classifier scored within task labels), else None
    union_scores: Optional[list[float]] = None


def evaluate_tasks(ctx: RunContext, tasks: list[Any], split_cache_offset: int = 0) -> EvaluationRow:
    """Score ``tasks`` with the current model in eval mode; restores train mode afterwards."""
    model = ctx.unwrapped_model()
    with eval_mode(model):
        return _evaluate(ctx, model, tasks, split_cache_offset)


def _evaluate(ctx: RunContext, model: Any, tasks: list[Any], split_cache_offset: int) -> EvaluationRow:
    scores, predictions, union_scores = [], {}, []
    examples, seconds = 0, 0.0
    for offset, task in enumerate(tasks):
        index = split_cache_offset + offset
        items = ctx.encoder.encode_task(task, index, "eval")
        result: TaskScore = score_task(
            model, ctx.encoder, task, items, task.eval, ctx.config.eval.batch_size, ctx.device,
            scoring=ctx.config.eval.scoring, max_new_tokens=ctx.config.eval.max_new_tokens,
        )
        scores.append(result.score)
        union_scores.append(result.union_score)
        predictions[task.name] = result.predictions
        examples += result.count
        seconds += result.count / max(result.examples_per_second, 1e-9)
    union = union_scores if union_scores and all(s is not None for s in union_scores) else None
    return EvaluationRow(scores, predictions, examples / max(seconds, 1e-9), union)
