"""Where a run stands between phases, as one serialisable object: what a checkpoint records.

The runner keeps one :class:`RunState` for the whole run: rows go into its matrices only through
:class:`~retain.evaluation.cl_metrics.AccuracyMatrix`'s own validating ``add_initial_row`` /
``add_training_row``, a checkpoint writes :meth:`RunState.to_dict` as its progress record
(``checkpoint/state.json``, beside the file checksums) and :attr:`RunState.method_states` as
``methods.*``, and a resume reads both back with :meth:`RunState.from_dict`. The record's keys are
those every format-2 checkpoint has had (``completed_phases``, ``global_step``, ``matrix``,
``matrix_union``, ``general``), so run folders written before this object existed resume as they are.

Not recorded: the RNG state (each phase reseeds from the run seed and its index, see
:mod:`retain.engine.runner`), the model and optimizer tensors (the checkpoint's own files).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from retain.evaluation.cl_metrics import AccuracyMatrix, GeneralScores, Score


@dataclass
class RunState:
    """The matrices, general rows, progress counters and method states of a run."""

    matrix: AccuracyMatrix
    #: scores on the held-out general sets (None: the stream has none)
    general: Optional[GeneralScores] = None
    #: classifier runs scored within task labels: the same rows scored among all the stream's
    #: labels (class-incremental); created with its first row
    union: Optional[AccuracyMatrix] = None
    completed_phases: int = 0
    global_step: int = 0  # optimizer steps over the whole run when the state was taken
    #: one state dict per method, in the run's method order (``Method.state_dict``)
    method_states: list[dict[str, Any]] = field(default_factory=list)

    def add_row(
        self, label: str, task_index: Optional[int], scores: Sequence[Score],
        union_scores: Optional[Sequence[Score]] = None,
    ) -> int:
        """Add a scored row (``task_index`` None: row 0, before training or of an evaluation
        without training) to the matrix and, when given, the union matrix; returns its index.

        Each matrix validates the row (its length, the order of the phases' task indices, row 0
        only first) and refuses it with ValueError, leaving itself as it was.
        """
        index = len(self.matrix.rows)
        _add(self.matrix, label, task_index, scores)
        if union_scores is not None:
            if self.union is None:
                self.union = AccuracyMatrix(
                    task_names=list(self.matrix.task_names), higher_is_better=list(self.matrix.higher_is_better),
                    has_initial_row=False,  # add_initial_row sets it when its first row is row 0
                    task_metrics=["accuracy"] * self.matrix.num_tasks,
                )
            _add(self.union, label, task_index, union_scores)
        return index

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's progress record (the method states are saved beside it, as tensors)."""
        return {
            "completed_phases": self.completed_phases,
            "global_step": self.global_step,
            "matrix": self.matrix.to_dict(),
            "matrix_union": self.union.to_dict() if self.union is not None else None,
            "general": self.general.to_dict() if self.general is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], method_states: Sequence[dict[str, Any]] = ()) -> "RunState":
        """Inverse of :meth:`to_dict` (extra keys of the record, such as its checksums, are ignored)."""
        return cls(
            matrix=AccuracyMatrix.from_dict(data["matrix"]),
            general=GeneralScores.from_dict(data["general"]) if data.get("general") else None,
            union=AccuracyMatrix.from_dict(data["matrix_union"]) if data.get("matrix_union") else None,
            completed_phases=int(data["completed_phases"]),
            global_step=int(data["global_step"]),
            method_states=list(method_states),
        )


def _add(matrix: AccuracyMatrix, label: str, task_index: Optional[int], scores: Sequence[Score]) -> None:
    if task_index is None:
        matrix.add_initial_row(list(scores), label)
    else:
        matrix.add_training_row(task_index, list(scores), label)


__all__ = ["RunState"]
