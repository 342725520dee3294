"""Turning examples into model inputs, per model kind.

- causal: prompt (through the chat template when one is set) + target (+ eos); labels mask the prompt (-100); right padding for training,
  left padding for generation; raw-text examples put the loss on every token.
- seq2seq: the prompt feeds the encoder, the target (+ eos) is the label sequence.
- classifier: the prompt is encoded, the label is an index into the stream's label union; a
  per-example mask of allowed classes restricts training and prediction to the task's own labels
  when ``label_space`` is ``task``.

Examples are encoded once per task and cached; truncation is counted so the log can report it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch

from retain.data.chat import render_chat
from retain.data.types import Example, Task

from retain.models.kinds import IGNORE_INDEX  # noqa: E402  (re-exported: the collation's label padding)


@dataclass
class EncodedExample:
    input_ids: list[int]
    labels: Any  # list[int] for generative kinds, int for the classifier
    key: str
    task_index: int
    prompt_length: int = 0  # causal: number of prompt tokens at the start of input_ids
    allowed: Optional[list[int]] = None  # classifier: allowed class ids


@dataclass
class MicroBatch:
    """One micro-batch: model inputs plus where its examples come from.

    ``keys`` are stream-unique example keys (``task/key``), so methods can look up stored signals
    (teacher logits, attention maps) of replayed examples.
    """

    inputs: dict[str, torch.Tensor]
    keys: list[str]
    task_indices: list[int]
    source: str = "new"
    label_mask: Optional[torch.Tensor] = None

    def __len__(self) -> int:
        return len(self.keys)

    def to(self, device: torch.device) -> "MicroBatch":
        self.inputs = {k: v.to(device) for k, v in self.inputs.items()}
        if self.label_mask is not None:
            self.label_mask = self.label_mask.to(device)
        return self


@dataclass
class TruncationCounter:
    sources: int = 0
    targets: int = 0
    seen: int = 0


class Encoder:
    """Encodes and collates examples for one model kind and tokenizer."""

    def __init__(
        self,
        tokenizer: Any,
        kind: str,
        label_names: list[str],
        max_source_length: int,
        max_target_length: int,
        label_space: str = "task",
        train_label_space: Optional[str] = None,
        chat: bool = False,
    ) -> None:
        self.tokenizer = tokenizer
        #: causal prompts go through the tokenizer's chat template (retain.data.chat)
        self.chat = chat and kind == "causal"
        self.kind = kind
        self.label_names = label_names
        self.label_ids = {name: i for i, name in enumerate(label_names)}
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        #: classes a classifier example competes over when scored / in the training loss (see collate)
        self.label_space = label_space
        self.train_label_space = train_label_space or label_space
        self.truncation = TruncationCounter()
        self.pad_id = tokenizer.pad_token_id
        self.eos_id = tokenizer.eos_token_id
        self._cache: dict[tuple[int, str, int], list[EncodedExample]] = {}

    # -- encoding --------------------------------------------------------------------------

    def _tokens(self, text: str, special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=special, verbose=False)["input_ids"])

    def _source(self, prompt: str) -> list[int]:
        if self.chat and prompt:
            # The rendered template carries its own special tokens (BOS, turn markers).
            ids = self._tokens(render_chat(self.tokenizer, prompt), special=False)
        else:
            ids = self._tokens(prompt, special=True)
        if len(ids) > self.max_source_length:
            self.truncation.sources += 1
            if self.kind == "classifier":
                ids = ids[: self.max_source_length - 1] + ids[-1:]
            else:  # keep the end: the answer cue sits there
                ids = ids[-self.max_source_length :]
        return ids

    def _target(self, target: str) -> list[int]:
        ids = self._tokens(target, special=False)
        if len(ids) >= self.max_target_length:
            self.truncation.targets += 1
            ids = ids[: self.max_target_length - 1]
        return ids + [self.eos_id]

    def encode(self, example: Example, task_index: int, task: Task) -> EncodedExample:
        self.truncation.seen += 1
        key = f"{task.name}/{example.key}"
        if self.kind == "classifier":
            allowed = [self.label_ids[name] for name in task.labels] if task.labels else None
            return EncodedExample(
                self._source(example.prompt), self.label_ids[example.target], key, task_index,
                allowed=allowed,
            )
        if task.raw_text:
            ids = self._tokens(example.target, special=True) + [self.eos_id]
            limit = self.max_source_length + self.max_target_length
            if len(ids) > limit:
                self.truncation.targets += 1
                ids = ids[:limit]
            return EncodedExample(ids, list(ids), key, task_index, prompt_length=0)
        source = self._source(example.prompt)
        target = self._target(example.target)
        if self.kind == "seq2seq":
            return EncodedExample(source, target, key, task_index)
        labels = [IGNORE_INDEX] * len(source) + target
        return EncodedExample(source + target, labels, key, task_index, prompt_length=len(source))

    def encode_task(self, task: Task, task_index: int, split: str) -> list[EncodedExample]:
        """Encode a task split once; later calls return the cached list."""
        cache_key = (task_index, split, id(task))
        if cache_key not in self._cache:
            examples = task.train if split == "train" else task.eval
            self._cache[cache_key] = [self.encode(e, task_index, task) for e in examples]
        return self._cache[cache_key]

    # -- collation -------------------------------------------------------------------------

    def _pad(self, rows: list[list[int]], value: int, left: bool = False) -> torch.Tensor:
        width = max(len(r) for r in rows)
        padded = [([value] * (width - len(r)) + r) if left else (r + [value] * (width - len(r))) for r in rows]
        return torch.tensor(padded, dtype=torch.long)

    def _mask(self, rows: list[list[int]], left: bool = False) -> torch.Tensor:
        return self._pad([[1] * len(r) for r in rows], 0, left=left)

    def collate(self, items: list[EncodedExample], source: str = "new", label_space: Optional[str] = None) -> MicroBatch:
        """Training collation (right padding).

        Classifier batches carry a ``label_mask`` of each example's task labels when the label
        space is ``task`` (default: the scoring one, ``label_space``; the engine passes
        ``train_label_space`` for what it trains on), and none under ``union``.
        """
        restrict = (label_space or self.label_space) == "task"
        ids = [it.input_ids for it in items]
        inputs = {"input_ids": self._pad(ids, self.pad_id), "attention_mask": self._mask(ids)}
        label_mask = None
        if self.kind == "classifier":
            inputs["labels"] = torch.tensor([it.labels for it in items], dtype=torch.long)
            if restrict and any(it.allowed is not None for it in items):
                label_mask = torch.zeros(len(items), len(self.label_names), dtype=torch.bool)
                for row, it in enumerate(items):
                    if it.allowed is None:
                        label_mask[row] = True
                    else:
                        label_mask[row, it.allowed] = True
        else:
            inputs["labels"] = self._pad([it.labels for it in items], IGNORE_INDEX)
        return MicroBatch(
            inputs=inputs,
            keys=[it.key for it in items],
            task_indices=[it.task_index for it in items],
            source=source,
            label_mask=label_mask,
        )

    def collate_prompts(self, items: list[EncodedExample]) -> dict[str, torch.Tensor]:
        """Generation inputs: causal prompts are left-padded so new tokens line up at the end."""
        if self.kind == "causal":
            prompts = [it.input_ids[: it.prompt_length] for it in items]
            return {"input_ids": self._pad(prompts, self.pad_id, left=True), "attention_mask": self._mask(prompts, left=True)}
        ids = [it.input_ids for it in items]
        return {"input_ids": self._pad(ids, self.pad_id), "attention_mask": self._mask(ids)}

    def target_tokens(self, item: EncodedExample) -> list[int]:
        return [t for t in item.labels if t != IGNORE_INDEX]
