"""Per-task scoring: answer normalisation, ROUGE-L, and batched generation matching one-by-one."""

from __future__ import annotations

import pytest
import torch

from retain.config import ModelConfig, StreamConfig
from retain.data.collate import Encoder
from retain.data.demo import build_demo_stream
from retain.evaluation.scoring import exact_match, generate_answers, normalize_answer, rank_answers, rouge_l
from retain.models.loading import load_model


def test_normalize_answer() -> None:
    assert normalize_answer("  The Science, or Technology! ") == "science or technology"
    assert exact_match("an Apple.", "apple")
    assert not exact_match("apples", "apple")


def test_rouge_l_is_f1_of_lcs() -> None:
    # LCS("a b c d", "a c d e") = "a c d" (3): precision 3/4, recall 3/4 -> F1 0.75
    assert abs(rouge_l("a c d e", "a b c d") - 0.75) < 1e-9


def test_batched_generation_equals_single_and_rank_agrees_with_labels() -> None:
    stream = build_demo_stream(StreamConfig(demo_tasks=1, demo_train_size=8, demo_eval_size=6), 0)
    loaded = load_model(ModelConfig(), stream, 0)
    encoder = Encoder(loaded.tokenizer, "causal", [], 64, 8)
    task = stream.tasks[0]
    items = encoder.encode_task(task, 0, "eval")
    device = torch.device("cpu")
    loaded.model.eval()
    batched = generate_answers(loaded.model, encoder, items, 6, 3, device)
    single = [generate_answers(loaded.model, encoder, [it], 1, 3, device)[0] for it in items]
    assert batched == single
    ranked = rank_answers(loaded.model, encoder, items, task.labels, 8, device)
    assert all(answer in task.labels for answer in ranked)


def test_classifier_records_task_and_union_predictions_from_one_forward() -> None:
    """Labels [a, b, c, d]; task 1 allows {c, d}. Logits of the two examples:
    ex0 [5, 0, 1, 2]: union argmax a (wrong), within {c, d} -> d (target d: right)
    ex1 [0, 0, 3, 1]: union argmax c, within {c, d} -> c (target c: right in both)
    Task score 100, union score 50."""
    from types import SimpleNamespace

    from retain.data.collate import MicroBatch
    from retain.data.types import Example, Task
    from retain.evaluation.scoring import score_task

    logits = torch.tensor([[5.0, 0.0, 1.0, 2.0], [0.0, 0.0, 3.0, 1.0]])
    mask = torch.tensor([[False, False, True, True]] * 2)

    class Encoder:
        kind = "classifier"
        label_names = ["a", "b", "c", "d"]

        def collate(self, chunk: list) -> MicroBatch:
            inputs = {"input_ids": torch.zeros(len(chunk), 1, dtype=torch.long),
                      "attention_mask": torch.ones(len(chunk), 1, dtype=torch.long)}
            return MicroBatch(inputs=inputs, keys=list(chunk), task_indices=[1] * len(chunk), label_mask=mask[: len(chunk)])

    def model(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(logits=logits[: input_ids.shape[0]])

    examples = [Example(prompt="x", target="d", key="t/0"), Example(prompt="y", target="c", key="t/1")]
    task = Task(name="t", train=[], eval=examples, metric="accuracy", labels=["c", "d"])
    result = score_task(model, Encoder(), task, ["t/0", "t/1"], examples, 8, torch.device("cpu"))
    assert result.score == 100.0 and result.union_score == 50.0
    assert [p["union_prediction"] for p in result.predictions] == ["a", "c"]
    assert [p["union_score"] for p in result.predictions] == [0.0, 1.0]


def test_shares_of_a_set_merge_into_the_single_process_score() -> None:
    from retain.evaluation.scoring import TaskScore, merge_shares

    def record(key: str, score: float, union: float) -> dict:
        return {"key": key, "target": "t", "prediction": "p", "score": score, "union_score": union}

    # process 0 scored positions 0 and 2, process 1 position 1 (every 2nd example each)
    first = TaskScore(50.0, [record("a", 1.0, 1.0), record("c", 0.0, 0.0)], 1.0, 2, 50.0)
    second = TaskScore(100.0, [record("b", 1.0, 0.0)], 1.0, 1, 0.0)
    merged = merge_shares([([0, 2], first), ([1], second)], 3, 2.0, "accuracy")
    assert [r["key"] for r in merged.predictions] == ["a", "b", "c"]  # set order, not process order
    assert merged.score == pytest.approx(200.0 / 3) and merged.union_score == pytest.approx(100.0 / 3)
    # perplexity pools the token NLL of the shares (not a mean of the shares' perplexities)
    import math

    pooled = merge_shares([([0], TaskScore(0.0, [], 1.0, 1, nll=(3.0, 1))), ([1], TaskScore(0.0, [], 1.0, 1, nll=(1.0, 3)))], 2, 1.0, "perplexity")
    assert pooled.score == pytest.approx(math.exp(4.0 / 4))
