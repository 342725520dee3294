"""What methods see at each hook: the model, the stream, the current phase and helpers."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from retain.config import RunConfig
from retain.data.collate import EncodedExample, Encoder, MicroBatch
from retain.data.types import Stream, Task
from retain.methods.base import Phase


@dataclass
class RunContext:
    config: RunConfig
    accelerator: Any
    model: torch.nn.Module
    tokenizer: Any
    kind: str
    stream: Stream
    encoder: Encoder
    run_dir: Path
    phases: list[Phase]
    logger: logging.Logger
    lora: bool = False
    phase_index: int = 0
    optimizer: Optional[torch.optim.Optimizer] = None
    scheduler: Any = None
    global_step: int = 0
    step_in_phase: int = 0
    initial_state: Optional[dict[str, torch.Tensor]] = None
    shared: dict[str, Any] = field(default_factory=dict)  # scratch space methods may share
    methods: list[Any] = field(default_factory=list)  # the run's methods, in hook order

    # -- where we are ----------------------------------------------------------------------

    @property
    def phase(self) -> Phase:
        return self.phases[self.phase_index]

    @property
    def task_index(self) -> int:
        """The (last) task index of the current phase."""
        return self.phase.task_indices[-1]

    @property
    def task(self) -> Task:
        return self.stream.tasks[self.task_index]

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def unwrapped_model(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.unwrapped_model().named_parameters() if p.requires_grad]

    # -- data helpers ----------------------------------------------------------------------

    def encoded(self, task_index: int, split: str = "train") -> list[EncodedExample]:
        return self.encoder.encode_task(self.stream.tasks[task_index], task_index, split)

    def phase_train_examples(self) -> list[EncodedExample]:
        items: list[EncodedExample] = []
        for index in self.phase.task_indices:
            items.extend(self.encoded(index, "train"))
        return items

    def iterate_batches(
        self,
        items: list[EncodedExample],
        batch_size: Optional[int] = None,
        shuffle: bool = False,
        seed: Optional[int] = None,
        source: str = "new",
        shard: bool = False,
    ) -> Iterator[MicroBatch]:
        """Micro-batches over ``items`` on the run's device (shuffled with ``seed`` if asked).

        ``shard``: under data parallelism each process takes every n-th batch (the order is the
        same on every process, as the seed is), and the batch count is cut to a multiple of the
        process count so that no process waits for a gradient all-reduce that never comes.
        """
        size = batch_size or self.config.train.batch_size
        order = list(range(len(items)))
        if shuffle:
            random.Random(seed).shuffle(order)
        starts = list(range(0, len(order), size))
        processes = self.accelerator.num_processes
        if shard and processes > 1:
            starts = starts[: len(starts) - len(starts) % processes][self.accelerator.process_index :: processes]
        for start in starts:
            chunk = [items[i] for i in order[start : start + size]]
            yield self.encoder.collate(chunk, source=source).to(self.device)

    def forward(self, batch: MicroBatch, model: Optional[torch.nn.Module] = None, **kwargs: Any) -> Any:
        """Run the model on a batch (labels included, so HF computes the token loss)."""
        model = model or self.model
        inputs = dict(batch.inputs)
        if self.kind == "classifier":
            inputs.pop("labels")
        return model(**inputs, **kwargs)

    def base_loss(self, batch: MicroBatch, outputs: Any) -> torch.Tensor:
        """The task loss: token cross-entropy, or classifier cross-entropy over allowed labels."""
        if self.kind != "classifier":
            return outputs.loss
        logits = outputs.logits.float()
        if batch.label_mask is not None:
            logits = logits.masked_fill(~batch.label_mask, torch.finfo(logits.dtype).min)
        return torch.nn.functional.cross_entropy(logits, batch.inputs["labels"])

    def answer_logits(self, batch: MicroBatch, outputs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits that predict answer tokens, aligned with their targets, and a row mask.

        causal: logits at position t predict token t+1, so they are shifted against the labels;
        seq2seq: decoder logits line up with the labels; classifier: one row per example.
        Returns (logits [N, V] for the N answer positions in batch order, targets [N]).
        """
        logits = outputs.logits
        labels = batch.inputs["labels"]
        if self.kind == "classifier":
            return logits, labels
        if self.kind == "causal":
            logits = logits[:, :-1, :]
            labels = labels[:, 1:]
        mask = labels != -100
        return logits[mask], labels[mask]
