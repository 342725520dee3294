"""The faster evaluation paths give the answers of the earlier ones: length-sorted generation,
rank scoring with the prompt encoded once, and the loss read back every few micro-batches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from retain.config import ModelConfig, StreamConfig
from retain.data.collate import Encoder
from retain.data.demo import build_demo_stream
from retain.evaluation.rank import rank_answers, rank_totals
from retain.evaluation.scoring import generate_answers, length_sorted_batches
from retain.models.loading import load_model
from tests.test_encoder_as_decoder import save_tiny_bert

CPU = torch.device("cpu")


def _setup(model: str, eval_size: int = 12, mixed_lengths: bool = False) -> tuple[Any, Encoder, Any, list[Any]]:
    """A tiny model and a demo task's encoded eval examples (``mixed_lengths``: prompts of 1-3x
    the demo prompt, since the generated prompts all have one length)."""
    stream = build_demo_stream(StreamConfig(demo_tasks=2, demo_train_size=8, demo_eval_size=eval_size), 3)
    loaded = load_model(ModelConfig(name_or_path=model, kind=None if model.startswith("builtin:") else "causal"), stream, 0)
    encoder = Encoder(loaded.tokenizer, loaded.kind, [], 96, 8)
    task = stream.tasks[1]
    if mixed_lengths:
        examples = [replace(e, prompt=" ".join([e.prompt] * (1 + i % 3))) for i, e in enumerate(task.eval)]
        task = replace(task, eval=examples)
    return loaded.model.eval(), encoder, task, encoder.encode_task(task, 1, "eval")


@pytest.mark.parametrize("model", ["builtin:tiny-llama", "builtin:tiny-gpt2", "builtin:tiny-t5", "bert-as-decoder"])
def test_rank_scoring_with_the_prompt_encoded_once_chooses_the_labels_of_the_per_label_path(model: str, tmp_path: Path) -> None:
    if model == "bert-as-decoder":
        model = str(save_tiny_bert(tmp_path / "bert"))
    net, encoder, task, items = _setup(model, mixed_lengths=True)  # left padding in the prompt pass
    shared = rank_totals(net, encoder, items, task.labels, 8, CPU, share_prompt=True)
    reference = rank_totals(net, encoder, items, task.labels, 8, CPU, share_prompt=False)
    assert shared.shape == (len(items), len(task.labels))
    torch.testing.assert_close(shared, reference, atol=1e-4, rtol=1e-4)
    assert rank_answers(net, encoder, items, task.labels, 8, CPU) == rank_answers(
        net, encoder, items, task.labels, 8, CPU, share_prompt=False
    )


@pytest.mark.parametrize("model", ["builtin:tiny-llama", "builtin:tiny-t5"])
def test_length_sorted_generation_returns_the_unsorted_answers_in_data_order(model: str) -> None:
    net, encoder, _, items = _setup(model, eval_size=10, mixed_lengths=True)
    batches = length_sorted_batches(items, 4)
    assert sorted(i for b in batches for i in b) == list(range(len(items)))
    assert [i for b in batches for i in b] != list(range(len(items)))  # the order really changes
    lengths = [len(items[i].input_ids) for b in batches for i in b]
    assert lengths == sorted(lengths, reverse=True)
    sorted_answers = generate_answers(net, encoder, items, 4, 4, CPU)
    assert sorted_answers == generate_answers(net, encoder, items, 4, 4, CPU, sort_by_length=False)


def test_generation_stops_once_every_sequence_of_the_batch_has_ended() -> None:
    """A model that always predicts eos: one forward pass per batch, not max_new_tokens of them."""
    net, encoder, _, items = _setup("builtin:tiny-llama")
    head = torch.nn.Linear(net.config.hidden_size, net.config.vocab_size, bias=True)
    torch.nn.init.zeros_(head.weight)
    with torch.no_grad():
        head.bias.fill_(-10.0)
        head.bias[encoder.eos_id] = 10.0
    net.lm_head = head
    calls = []
    handle = net.model.register_forward_hook(lambda *args: calls.append(1))
    try:
        answers = generate_answers(net, encoder, items[:6], 6, 20, CPU)
    finally:
        handle.remove()
    assert answers == [""] * 6 and len(calls) == 1


def test_the_logged_mean_loss_is_the_mean_of_every_micro_batch_loss(tmp_path: Path) -> None:
    """The loss is summed on the device and read back every few micro-batches; the mean per task
    is the one the per-micro-batch host reads gave (each loss is recorded as it is added)."""
    import retain
    from retain.engine import loop
    from tests.conftest import tiny_config

    seen: list[float] = []
    means: list[float] = []
    add, mean = loop.LossTracker.add, loop.LossTracker.mean

    def recording_add(self: Any, loss: torch.Tensor) -> None:
        seen.append(loss.detach().float().item())
        add(self, loss)

    def checked_mean(self: Any) -> float:
        value = mean(self)
        assert self.count == len(seen) > loop.LOSS_READ_EVERY  # more than one window
        assert value == sum(seen) / len(seen)
        means.append(value)
        return value

    config = tiny_config(tmp_path, stream={"demo_tasks": 1, "demo_train_size": 48, "demo_eval_size": 2},
                         train={"batch_size": 4})
    monkey = pytest.MonkeyPatch()
    monkey.setattr(loop.LossTracker, "add", recording_add)
    monkey.setattr(loop.LossTracker, "mean", checked_mean)
    try:
        retain.run(config, quiet=True)
    finally:
        monkey.undo()
    assert len(means) == 1
    log = (tmp_path / "runs" / "run" / "run.log").read_text()
    assert f"mean loss {means[0]:.4f}" in log


def test_the_loss_tracker_reads_window_means() -> None:
    from retain.engine.loop import LossTracker

    tracker = LossTracker(CPU)
    for value in (1.0, 2.0, 3.0):
        tracker.add(torch.tensor(value))
    assert tracker.read_window() == 2.0
    tracker.add(torch.tensor(10.0))
    assert tracker.read_window() == 10.0 and tracker.mean() == 4.0
