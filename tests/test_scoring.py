"""Per-task scoring: answer normalisation, ROUGE-L, and batched generation matching one-by-one."""

from __future__ import annotations

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
