"""Evaluation shares of different sizes: how many batches a process pads with, and that the pads
run the forwards of a real batch without touching a score (the 2-process launch is in
``tests/test_sharded.py``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch

from retain.config import ModelConfig, StreamConfig
from retain.data.collate import Encoder
from retain.data.demo import build_demo_stream
from retain.engine.evaluate import forwards_gather_parameters, pad_batches, share_positions
from retain.evaluation.scoring import discarded_batches, forward_batches, merge_shares, score_task, scoring_path
from retain.models.loading import load_model

CPU = torch.device("cpu")


def test_shares_split_every_nth_example() -> None:
    assert share_positions(9, 2, 0) == [0, 2, 4, 6, 8] and share_positions(9, 2, 1) == [1, 3, 5, 7]
    assert share_positions(1, 2, 1) == []


@pytest.mark.parametrize(
    "path, count, batch_size, labels, pads",
    [
        ("generate", 9, 4, 0, [0, 1]),  # shares of 5 and 4: 2 batches and 1 (the split that hung)
        ("generate", 8, 4, 0, [0, 0]),  # 4 and 4
        ("generate", 7, 4, 0, [0, 0]),  # 4 and 3: one batch each
        ("generate", 1, 4, 0, [0, 1]),  # one example: process 1's share is empty
        ("generate", 0, 4, 0, [0, 0]),
        ("rank", 9, 4, 3, [0, 1]),  # one example per batch (4 // 3 labels): 5 batches and 4
        ("rank", 9, 8, 3, [0, 1]),  # two per batch (8 // 3): 3 batches and 2
        ("rank", 7, 8, 3, [0, 0]),  # 4 and 3 examples: 2 batches each
        ("likelihood", 3, 1, 0, [0, 1]),
        ("classify", 5, 2, 0, [0, 1]),  # 3 -> 2 batches, 2 -> 1
    ],
)
def test_pads_bring_every_share_to_the_batches_of_the_largest(
    path: str, count: int, batch_size: int, labels: int, pads: list[int]
) -> None:
    assert [pad_batches(path, count, 2, rank, batch_size, labels) for rank in (0, 1)] == pads
    for rank in (0, 1):
        own = forward_batches(path, len(share_positions(count, 2, rank)), batch_size, labels)
        largest = forward_batches(path, len(share_positions(count, 2, 0)), batch_size, labels)
        assert own + pad_batches(path, count, 2, rank, batch_size, labels) == largest


def _tiny(eval_size: int = 9) -> tuple[Any, Encoder, Any, list[Any]]:
    stream = build_demo_stream(StreamConfig(demo_tasks=1, demo_train_size=4, demo_eval_size=eval_size), 0)
    loaded = load_model(ModelConfig(), stream, 0)
    encoder = Encoder(loaded.tokenizer, "causal", [], 64, 8)
    task = stream.tasks[0]
    return loaded.model.eval(), encoder, task, encoder.encode_task(task, 0, "eval")


class _Forwards:
    """Counts forward calls of a model and its ``generate`` calls."""

    def __init__(self, model: Any) -> None:
        self.forwards = 0
        self.generates = 0
        model.register_forward_pre_hook(self._forward)
        generate = model.generate

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.generates += 1
            return generate(*args, **kwargs)

        model.generate = counted

    def _forward(self, *args: Any) -> None:
        self.forwards += 1


@pytest.mark.parametrize("scoring, metric", [("generate", "accuracy"), ("rank", "accuracy"), ("generate", "perplexity")])
def test_a_pad_runs_the_forwards_of_a_batch_and_changes_no_score(scoring: str, metric: str) -> None:
    """Two shares of 9 examples at batch 4, scored as two processes would (the second padded to
    the first's batches): the share with a pad runs as many forward (or generate) calls as the
    larger, and the merged score and predictions are those of the whole set in one process."""
    model, encoder, task, items = _tiny()
    task = replace(task, metric=metric)
    path = scoring_path(encoder, task, scoring)
    counter = _Forwards(model)
    whole = score_task(model, encoder, task, items, task.eval, 4, CPU, scoring=scoring, max_new_tokens=3)
    calls: list[int] = []
    shares = []
    for rank in (0, 1):
        counter.forwards = counter.generates = 0
        positions = share_positions(len(items), 2, rank)
        share = score_task(model, encoder, task, [items[i] for i in positions], [task.eval[i] for i in positions], 4,
                           CPU, scoring=scoring, max_new_tokens=3)
        pads = pad_batches(path, len(items), 2, rank, 4, len(task.labels))
        discarded_batches(model, encoder, task, items[0], pads, CPU, scoring, max_new_tokens=3)
        calls.append(counter.generates if path == "generate" else counter.forwards)
        shares.append((positions, share))
    assert calls[0] == calls[1], f"{path}: processes ran {calls} calls"
    merged = merge_shares(shares, len(items), 1.0, task.metric)
    # perplexity sums the NLL of other batches than one process does: equal up to float rounding
    assert merged.score == pytest.approx(whole.score, rel=1e-6)
    assert merged.predictions == whole.predictions


def test_a_model_without_sharded_parameters_gathers_nothing_in_its_forward() -> None:
    assert not forwards_gather_parameters(torch.nn.Linear(2, 2))
