"""Collation masks per model kind: prompts masked, padding sides, classifier label masks."""

from __future__ import annotations

import torch

from retain.data.collate import IGNORE_INDEX, Encoder
from retain.data.tokenizer import build_word_tokenizer
from retain.data.types import Example, Task

TEXTS = ["q : a b c answer :", "x", "yes no", "q : a answer :", "one two three four"]


def _setup(kind: str, label_space: str = "task"):
    tokenizer = build_word_tokenizer(TEXTS)
    task = Task("t", [Example("q : a b c answer :", "yes", "0"), Example("q : a answer :", "no", "1")], [], labels=["yes", "no"])
    other = Task("u", [Example("q : a answer :", "x", "0")], [], labels=["x"])
    labels = ["yes", "no", "x"] if kind == "classifier" else []
    return tokenizer, Encoder(tokenizer, kind, labels, 16, 8, label_space), task, other


def test_causal_masks_prompt_and_pads_right() -> None:
    tokenizer, encoder, task, _ = _setup("causal")
    items = encoder.encode_task(task, 0, "train")
    batch = encoder.collate(items)
    ids, labels, mask = batch.inputs["input_ids"], batch.inputs["labels"], batch.inputs["attention_mask"]
    # example 0: 7 prompt tokens + "yes" + eos; example 1: 5 prompt tokens + "no" + eos, padded by 2
    assert ids.shape == (2, 9)
    assert labels[0].tolist()[:7] == [IGNORE_INDEX] * 7
    assert labels[0, 7].item() == tokenizer.convert_tokens_to_ids("yes")
    assert labels[0, 8].item() == tokenizer.eos_token_id
    assert labels[1].tolist() == [IGNORE_INDEX] * 5 + [tokenizer.convert_tokens_to_ids("no"), tokenizer.eos_token_id, IGNORE_INDEX, IGNORE_INDEX]
    assert mask[1].tolist() == [1] * 7 + [0, 0]
    assert ids[1, 7:].tolist() == [tokenizer.pad_token_id] * 2
    assert batch.keys == ["t/0", "t/1"]


def test_causal_generation_inputs_are_left_padded_prompts() -> None:
    tokenizer, encoder, task, _ = _setup("causal")
    items = encoder.encode_task(task, 0, "train")
    inputs = encoder.collate_prompts(items)
    assert inputs["input_ids"].shape == (2, 7)
    assert inputs["attention_mask"][1].tolist() == [0, 0, 1, 1, 1, 1, 1]
    assert inputs["input_ids"][1, -1].item() == tokenizer.convert_tokens_to_ids(":")


def test_seq2seq_labels_are_the_target() -> None:
    tokenizer, encoder, task, _ = _setup("seq2seq")
    batch = encoder.collate(encoder.encode_task(task, 0, "train"))
    assert batch.inputs["input_ids"].shape == (2, 7)
    assert batch.inputs["labels"].tolist() == [
        [tokenizer.convert_tokens_to_ids("yes"), tokenizer.eos_token_id],
        [tokenizer.convert_tokens_to_ids("no"), tokenizer.eos_token_id],
    ]


def test_classifier_label_ids_and_task_mask() -> None:
    _, encoder, task, other = _setup("classifier")
    batch = encoder.collate(encoder.encode_task(task, 0, "train") + encoder.encode_task(other, 1, "train"))
    assert batch.inputs["labels"].tolist() == [0, 1, 2]
    assert batch.label_mask.tolist() == [[True, True, False], [True, True, False], [False, False, True]]
    _, union_encoder, task, _ = _setup("classifier", "union")
    assert union_encoder.collate(union_encoder.encode_task(task, 0, "train")).label_mask is None


def test_raw_text_puts_loss_on_every_token() -> None:
    tokenizer, encoder, _, _ = _setup("causal")
    task = Task("lm", [Example("", "one two three four", "0")], [], metric="perplexity", raw_text=True)
    batch = encoder.collate(encoder.encode_task(task, 0, "train"))
    assert torch.equal(batch.inputs["labels"], batch.inputs["input_ids"])


def test_truncation_is_counted_and_keeps_the_prompt_end() -> None:
    tokenizer = build_word_tokenizer(TEXTS)
    encoder = Encoder(tokenizer, "causal", [], max_source_length=3, max_target_length=8)
    task = Task("t", [Example("q : a b c answer :", "yes", "0")], [])
    item = encoder.encode_task(task, 0, "train")[0]
    assert item.prompt_length == 3
    assert tokenizer.convert_ids_to_tokens(item.input_ids[:3]) == ["c", "answer", ":"]
    assert encoder.truncation.sources == 1


def test_training_label_space_is_its_own_switch() -> None:
    """train.label_space decides the training batches' classes; scoring keeps eval.label_space."""
    tokenizer, _, task, _ = _setup("classifier")
    encoder = Encoder(tokenizer, "classifier", ["yes", "no", "x"], 16, 8, "task", train_label_space="union")
    items = encoder.encode_task(task, 0, "train")
    assert encoder.collate(items).label_mask is not None  # scored among the task's labels
    assert encoder.collate(items, label_space=encoder.train_label_space).label_mask is None  # trained over all
    follows = Encoder(tokenizer, "classifier", ["yes", "no", "x"], 16, 8, "union")
    assert follows.train_label_space == "union"  # unset: eval.label_space, as before the key existed
