"""The data model of a stream: examples, tasks and the stream itself.

A task carries its own metric and label set so that evaluation and the classifier head never have
to guess them from the data again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from retain.evaluation.metrics import get_metric


@dataclass(frozen=True)
class Example:
    """One record: the prompt (instruction + input) and the target text.

    For raw-text tasks (continual pre-training) ``prompt`` is empty and the loss covers ``target``.
    ``key`` identifies the example inside its task (stable across runs: used by replay buffers and
    stored teacher signals).
    """

    prompt: str
    target: str
    key: str = ""


@dataclass
class Task:
    """A task of the stream.

    ``labels`` is the label set of a classification-style task (None for free text or raw text).
    ``metric`` is a registered metric name or an import path (:mod:`retain.evaluation.metrics`);
    ``metric_reason`` says how it was chosen (shown in the run header and the report).
    ``answer_processing`` names a rule of :mod:`retain.evaluation.answer_processing` applied to
    generated answers before the metric ("" = none: the answer is scored as generated).
    """

    name: str
    train: list[Example]
    eval: list[Example]
    metric: str = "accuracy"
    labels: Optional[list[str]] = None
    raw_text: bool = False
    skipped_records: int = 0  # records reported and left out while reading (counted warnings)
    metric_reason: str = ""
    answer_processing: str = ""
    #: the epochs the benchmark's published experiments train this task for (train.task_epochs:
    #: published), None where the benchmark publishes none
    published_epochs: Optional[float] = None

    @property
    def higher_is_better(self) -> bool:
        return get_metric(self.metric).higher_is_better


@dataclass
class Stream:
    """An ordered list of tasks plus held-out general-ability evaluation sets."""

    name: str
    tasks: list[Task]
    general: list[Task] = field(default_factory=list)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def all_labels(self) -> list[str]:
        """The union of label sets in stream order (the classifier head's classes)."""
        seen: dict[str, None] = {}
        for task in self.tasks:
            for label in task.labels or []:
                seen.setdefault(label, None)
        return list(seen)
