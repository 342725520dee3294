"""Per-task scoring: greedy batched generation, rank classification, classifier argmax, perplexity.

How answers are compared with targets is the task's metric (:mod:`retain.evaluation.metrics`);
bounded metrics are on a 0-100 scale, perplexity on its own (lower is better).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import torch

from retain.data.collate import IGNORE_INDEX, EncodedExample, Encoder
from retain.data.types import Task
from retain.evaluation.answer_processing import get_answer_processor
from retain.evaluation.metrics import RougeL, exact_match, get_metric, normalize_answer
from retain.evaluation.rank import rank_answers
from retain.models.kinds import mask_disallowed

__all__ = ["TaskScore", "classify", "discarded_batches", "exact_match", "forward_batches", "generate_answers",
           "normalize_answer", "perplexity", "rank_answers", "rouge_l", "score_task", "scoring_path"]


def rouge_l(prediction: str, target: str) -> float:
    """ROUGE-L F1 (rouge-score package); the ``rouge_l`` metric's per-example score."""
    return RougeL().score(prediction, target)


@dataclass
class TaskScore:
    score: float
    predictions: list[dict[str, Any]]
    examples_per_second: float = 0.0
    count: int = 0
    #: Classifier scored within each task's labels: the same model's score among the labels of the
    #: whole stream (class-incremental), from the same logits; None otherwise.
    union_score: Optional[float] = None
    #: perplexity tasks: (summed token NLL, tokens), from which shares of the set are combined
    nll: Optional[tuple[float, int]] = None


def _batches(items: list[EncodedExample], size: int) -> list[list[EncodedExample]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _prompt_length(item: EncodedExample) -> int:
    return item.prompt_length if item.prompt_length else len(item.input_ids)


def length_sorted_batches(items: list[EncodedExample], size: int) -> list[list[int]]:
    """Batches of positions in ``items``, longest prompts first, so each batch pads to prompts of
    about its own length instead of the longest in data order (ties keep data order)."""
    order = sorted(range(len(items)), key=lambda i: -_prompt_length(items[i]))
    return [order[i : i + size] for i in range(0, len(order), size)]


@torch.no_grad()
def generate_answers(
    model: Any, encoder: Encoder, items: list[EncodedExample], batch_size: int, max_new_tokens: int, device: torch.device,
    sort_by_length: bool = True, synced_gpus: bool = False,
) -> list[str]:
    """Greedy generation with the KV cache, decoded without the prompt, in the order of ``items``.

    Batches are formed by prompt length (``sort_by_length``; False: data order, the earlier path).
    ``generate`` itself stops a batch once every sequence has produced eos.

    ``synced_gpus``: every process keeps stepping a batch until all processes' batches are done,
    for a model whose forward is a collective (sharded parameters). Always passed explicitly:
    left to itself ``generate`` turns it on for any FSDP-managed module, also when its parameters
    are already gathered, and then all-reduces per token with processes that have no batch left.
    """
    tokenizer = encoder.tokenizer
    if sort_by_length:
        batches = length_sorted_batches(items, batch_size)
    else:
        batches = [list(range(i, min(i + batch_size, len(items)))) for i in range(0, len(items), batch_size)]
    answers: list[str] = [""] * len(items)
    for positions in batches:
        chunk = [items[i] for i in positions]
        inputs = {k: v.to(device) for k, v in encoder.collate_prompts(chunk).items()}
        output = model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
            synced_gpus=synced_gpus,
        )
        if encoder.kind == "causal":
            output = output[:, inputs["input_ids"].shape[1] :]
        for position, text in zip(positions, tokenizer.batch_decode(output, skip_special_tokens=True)):
            answers[position] = text.strip()
    return answers


@torch.no_grad()
def classify(
    model: Any, encoder: Encoder, items: list[EncodedExample], batch_size: int, device: torch.device
) -> tuple[list[str], Optional[list[str]]]:
    """Argmax labels within each example's allowed labels, and (when those are a subset) among all
    labels of the stream: task- and class-incremental predictions of one forward pass."""
    answers: list[str] = []
    union_answers: list[str] = []
    masked = False
    for chunk in _batches(items, batch_size):
        batch = encoder.collate(chunk).to(device)
        logits = model(input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"]).logits
        union_answers.extend(encoder.label_names[i] for i in logits.argmax(-1).tolist())
        if batch.label_mask is not None:
            masked = True
            logits = mask_disallowed(logits, batch.label_mask)
        answers.extend(encoder.label_names[i] for i in logits.argmax(-1).tolist())
    return answers, (union_answers if masked else None)


@torch.no_grad()
def perplexity(model: Any, encoder: Encoder, items: list[EncodedExample], batch_size: int, device: torch.device) -> float:
    """exp(mean token NLL) pooled over all tokens of the set."""
    total_nll, total_tokens = nll_sums(model, encoder, items, batch_size, device)
    return math.exp(total_nll / max(1, total_tokens))


@torch.no_grad()
def nll_sums(
    model: Any, encoder: Encoder, items: list[EncodedExample], batch_size: int, device: torch.device
) -> tuple[float, int]:
    """(summed token NLL, token count) over the set: what shares of a set add up to."""
    total_nll, total_tokens = 0.0, 0
    for chunk in _batches(items, batch_size):
        batch = encoder.collate(chunk).to(device)
        logits = model(input_ids=batch.inputs["input_ids"], attention_mask=batch.inputs["attention_mask"]).logits.float()
        labels = batch.inputs["labels"][:, 1:]
        logits = logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE_INDEX, reduction="sum"
        )
        total_nll += nll.item()
        total_tokens += int((labels != IGNORE_INDEX).sum())
    return total_nll, total_tokens


def scoring_path(encoder: Encoder, task: Task, scoring: str = "generate") -> str:
    """How :func:`score_task` scores ``task``: ``likelihood`` (perplexity), ``classify`` (a
    classifier's argmax), ``rank`` (rank classification over the task's labels) or ``generate``."""
    if get_metric(task.metric).inputs == "likelihood":
        return "likelihood"
    if encoder.kind == "classifier":
        return "classify"
    if scoring == "rank" and task.labels:
        return "rank"
    return "generate"


def forward_batches(path: str, count: int, batch_size: int, num_labels: int = 0) -> int:
    """How many batches :func:`score_task` runs on ``path`` for ``count`` examples.

    Each batch is the same number of forward calls on every path but generation (one prompt
    pass, or two for rank classification with multi-token labels; generation steps per token
    until its batch is done, which ``synced_gpus`` keeps in step across processes), so processes
    that run as many batches run as many collectives in a sharded forward. Rank classification
    fits ``batch_size // num_labels`` examples into a batch (each repeated once per label).
    """
    per_batch = max(1, batch_size // max(1, num_labels)) if path == "rank" else max(1, batch_size)
    return -(-count // per_batch)


@torch.no_grad()
def discarded_batches(
    model: Any, encoder: Encoder, task: Task, filler: EncodedExample, batches: int, device: torch.device,
    scoring: str = "generate", max_new_tokens: int = 1, synced_gpus: bool = False,
) -> None:
    """``batches`` one-example batches of ``filler`` on ``task``'s scoring path; results dropped.

    What a process whose share of a set has fewer batches than another's runs after its own,
    when a forward is a collective (sharded parameters, not gathered): every process then runs
    as many forwards, and none waits in an all-gather that never comes. One example per batch:
    the collectives of a forward do not depend on its batch size, and the pads cost the least.
    Their answers touch no score, prediction or NLL sum.
    """
    path = scoring_path(encoder, task, scoring)
    for _ in range(batches):
        if path == "likelihood":
            nll_sums(model, encoder, [filler], 1, device)
        elif path == "classify":
            classify(model, encoder, [filler], 1, device)
        elif path == "rank":
            rank_answers(model, encoder, [filler], task.labels, 1, device)
        else:
            generate_answers(model, encoder, [filler], 1, max_new_tokens, device, synced_gpus=synced_gpus)


def score_task(
    model: Any,
    encoder: Encoder,
    task: Task,
    items: list[EncodedExample],
    examples: list[Any],
    batch_size: int,
    device: torch.device,
    scoring: str = "generate",
    max_new_tokens: Optional[int] = None,
    synced_gpus: bool = False,
) -> TaskScore:
    """Score one task's evaluation examples with the task's metric.

    ``synced_gpus``: generation steps in step with the other processes (see
    :func:`generate_answers`); only for a model whose forward is a collective.
    """
    import time

    start = time.perf_counter()
    metric = get_metric(task.metric)
    path = scoring_path(encoder, task, scoring)
    if path == "likelihood":
        nll, tokens = nll_sums(model, encoder, items, batch_size, device)
        elapsed = time.perf_counter() - start
        return TaskScore(math.exp(nll / max(1, tokens)), [], len(items) / max(elapsed, 1e-9), len(items), nll=(nll, tokens))
    if not items:  # a process's empty share of a set smaller than the process count
        return TaskScore(0.0, [], 0.0, 0)
    union_answers: Optional[list[str]] = None
    if path == "classify":
        answers, union_answers = classify(model, encoder, items, batch_size, device)
    elif path == "rank":
        answers = rank_answers(model, encoder, items, task.labels, batch_size, device)
    else:
        budget = max_new_tokens or max(len(encoder.target_tokens(it)) for it in items) + 2
        answers = generate_answers(model, encoder, items, batch_size, budget, device, synced_gpus=synced_gpus)
    elapsed = time.perf_counter() - start
    generated, answers, targets = _post_process(task, path, answers, [ex.target for ex in examples])
    predictions = []
    values: list[float] = []
    for i, (example, answer, target) in enumerate(zip(examples, answers, targets)):
        value = float(metric.score(answer, target, example.prompt))
        values.append(value)
        record = {"key": example.key, "prompt": example.prompt, "target": example.target, "prediction": answer, "score": value}
        if generated is not None:  # the task's post-processing: what was generated, and the target as scored
            record["generated"] = generated[i]
            if target != example.target:
                record["scored_target"] = target
        predictions.append(record)
    score = float(metric.aggregate(
        values, answers, targets, [ex.prompt for ex in examples]
    ))
    union_score = None
    if union_answers is not None:
        union_total = 0.0
        for record, answer in zip(predictions, union_answers):
            record["union_prediction"] = answer
            record["union_score"] = float(exact_match(answer, record["target"]))
            union_total += record["union_score"]
        union_score = 100.0 * union_total / max(1, len(items))
    return TaskScore(score, predictions, len(items) / max(elapsed, 1e-9), len(items), union_score)


def _post_process(
    task: Task, path: str, answers: list[str], targets: list[str]
) -> tuple[Optional[list[str]], list[str], list[str]]:
    """(generated texts or None, answers as scored, targets as scored): the task's named answer
    post-processing on generated answers; a task that names none is scored on what it generated."""
    processor = get_answer_processor(task.answer_processing) if path == "generate" else None
    if processor is None:
        return None, answers, targets
    return answers, [processor.answer(a) for a in answers], [processor.target(t) for t in targets]


def merge_shares(shares: list[tuple[list[int], TaskScore]], count: int, seconds: float, metric_name: str) -> TaskScore:
    """One task's score from the scores of disjoint shares of its evaluation set.

    ``shares``: (positions in the set, the share's score) per process. Predictions are put back
    in set order and the score is recomputed over all of them with the metric's own aggregate
    (a corpus-level metric is not a mean of shares; perplexity comes from the pooled NLL), so the
    result is the single-process score.
    """
    predictions: list[Optional[dict[str, Any]]] = [None] * count
    nll, tokens = 0.0, 0
    pooled = False
    for positions, part in shares:
        for position, record in zip(positions, part.predictions):
            predictions[position] = record
        if part.nll is not None:
            pooled = True
            nll, tokens = nll + part.nll[0], tokens + part.nll[1]
    speed = count / max(seconds, 1e-9)
    if pooled:
        return TaskScore(math.exp(nll / max(1, tokens)), [], speed, count, nll=(nll, tokens))
    records = [r for r in predictions if r is not None]
    score = float(get_metric(metric_name).aggregate(
        [r["score"] for r in records], [r["prediction"] for r in records],
        [r.get("scored_target", r["target"]) for r in records], [r.get("prompt", "") for r in records],
    ))
    union_score = None
    if records and "union_score" in records[0]:
        union_score = 100.0 * sum(r["union_score"] for r in records) / max(1, count)
    return TaskScore(score, records, speed, count, union_score)
