"""What methods see at each hook: the services of the run (model, accelerator, stream, encoder,
helpers) and, in ``state``, where the run stands (:class:`~retain.engine.state.TrainingState`).

This module imports no method: methods are handed a context, the context knows none of them.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ContextManager, Optional

import torch

from retain.config import RunConfig
from retain.data.collate import EncodedExample, Encoder, MicroBatch
from retain.data.types import Stream, Task
from retain.engine.progress import timed_pass
from retain.engine.state import Phase, TrainingState
from retain.models.kinds import ModelKind, model_kind


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
    state: TrainingState
    logger: logging.Logger
    lora: bool = False
    optimizer: Optional[torch.optim.Optimizer] = None
    scheduler: Any = None
    initial_state: Optional[dict[str, torch.Tensor]] = None
    #: the capabilities the run's methods declare (see retain.methods.base)
    capabilities: frozenset[str] = frozenset()
    #: components methods offer each other, by kind (e.g. "replay_buffer"), in method order
    components: dict[str, list[Any]] = field(default_factory=dict)
    #: this process may draw progress bars (see retain.engine.progress)
    show_progress: bool = False
    #: the current micro-batch's loss terms over parameter shards (see :meth:`add_shard_term`)
    shard_terms: list[torch.Tensor] = field(default_factory=list)

    def add_shard_term(self, term: torch.Tensor) -> None:
        """Declare that ``term``, already in the loss ``on_loss`` returns, gives each parameter row
        its gradient from this process alone when the parameters are FSDP2 shards (a penalty on the
        local rows, or a loss on gathered matrices), instead of a gradient averaged over processes.

        An averaged gradient makes a pad micro-batch (weight 0) on one process and a real one on
        another the single-process gradient; a shard's does not. So on a sharded model the training
        loop re-weights the term by the mean weight over processes (``PlannedBatch.shared_weight``),
        or a pad would drop the shard's part of the step and the real batch count it twice. On an
        unsharded model the declaration changes nothing.
        """
        self.shard_terms.append(term)

    def take_shard_terms(self) -> Optional[torch.Tensor]:
        """The sum of the terms declared since the last call (None: none), forgetting them."""
        terms, self.shard_terms = self.shard_terms, []
        return sum(terms[1:], terms[0]) if terms else None

    # -- where we are (shorthands for ``state``) -------------------------------------------

    @property
    def phases(self) -> list[Phase]:
        return self.state.phases

    @property
    def phase_index(self) -> int:
        return self.state.phase_index

    @property
    def phase(self) -> Phase:
        return self.state.phase

    @property
    def task_index(self) -> int:
        """The (last) task index of the current phase."""
        return self.state.task_index

    @property
    def task(self) -> Task:
        return self.stream.tasks[self.task_index]

    @property
    def model_kind(self) -> ModelKind:
        return model_kind(self.kind)

    def declares(self, capability: str) -> bool:
        """Whether any method of the run declares ``capability``."""
        return capability in self.capabilities

    def components_of(self, kind: str) -> list[Any]:
        """The components of ``kind`` the run's methods offer (e.g. replay buffers)."""
        return list(self.components.get(kind, []))

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def unwrapped_model(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.model)

    def pass_model(self) -> torch.nn.Module:
        """The model for statistics passes and evaluation: without the data-parallel wrapper,
        whose forward may hold a collective (buffer broadcast) that uneven shares would hang on."""
        return self.unwrapped_model()

    def full_parameters(self) -> ContextManager[None]:
        """Inside: full parameters on every process and no collective in forward or backward
        (FSDP2, see :func:`retain.engine.sharding.full_parameters`); a no-op otherwise."""
        from retain.engine.sharding import full_parameters, zero3_engine

        return full_parameters(self.unwrapped_model(), zero3_engine(self.accelerator))

    def trainable_parameters(self) -> list[tuple[str, torch.nn.Parameter]]:
        return [(n, p) for n, p in self.unwrapped_model().named_parameters() if p.requires_grad]

    # -- data helpers ----------------------------------------------------------------------

    def encoded(self, task_index: int, split: str = "train") -> list[EncodedExample]:
        return self.encoder.encode_task(self.stream.tasks[task_index], task_index, split)

    def phase_epochs(self) -> float:
        """The current phase's epochs: ``train.epochs``, or its task's ``train.task_epochs``."""
        from retain.engine.task_epochs import phase_epochs, resolve_task_epochs

        epochs = resolve_task_epochs(self.config.train, self.stream)
        return phase_epochs(epochs, self.phase.task_indices, self.phase.name)

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
        progress: Optional[str] = None,
    ) -> Iterator[MicroBatch]:
        """Micro-batches over ``items`` on the run's device (shuffled with ``seed`` if asked).

        ``shard``: under data parallelism each process takes every n-th batch (the order is the
        same on every process, as the seed is); shares may differ by one batch, so a sharded pass
        runs on :meth:`pass_model` and combines its results with :mod:`retain.engine.collective`.

        ``progress``: the name of the pass (e.g. "ewc: Fisher"); it gets a progress bar and a log
        line with its time (:mod:`retain.engine.progress`).
        """
        size = batch_size or self.config.train.batch_size
        order = list(range(len(items)))
        if shuffle:
            random.Random(seed).shuffle(order)
        starts = list(range(0, len(order), size))
        processes = self.accelerator.num_processes
        if shard and processes > 1:
            starts = starts[self.accelerator.process_index :: processes]
        batches = (
            self.encoder.collate([items[i] for i in order[start : start + size]], source=source,
                                 label_space=self.encoder.train_label_space).to(self.device)
            for start in starts
        )
        if progress is not None:
            batches = timed_pass(self, batches, len(starts), progress)
        yield from batches

    def forward(self, batch: MicroBatch, model: Optional[torch.nn.Module] = None, **kwargs: Any) -> Any:
        """Run the model on a batch (labels included, so HF computes the token loss)."""
        return (model or self.model)(**self.model_kind.inputs(batch), **kwargs)

    def base_loss(self, batch: MicroBatch, outputs: Any) -> torch.Tensor:
        """The task loss: token cross-entropy, or classifier cross-entropy over allowed labels."""
        return self.model_kind.loss(batch, outputs)
