"""Where a run stands, as methods see it: the phases and the training progress.

Kept apart from the services of :class:`~retain.engine.context.RunContext` (model, accelerator,
encoder, ...) so that what a method may read about progress is plain data; this module imports
nothing of the engine or the methods. What a checkpoint saves of it (the global step) is in
:class:`~retain.engine.run_state.RunState`.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Phase:
    """A training phase: one matrix row. Normally one task; multi-task training has one phase."""

    name: str
    task_indices: list[int]


@dataclass
class TrainingState:
    """Progress of the run: the phase being trained and the optimizer steps taken."""

    phases: list[Phase] = field(default_factory=list)
    phase_index: int = 0
    global_step: int = 0  # optimizer steps over the whole run
    step_in_phase: int = 0  # optimizer steps of the current phase's training loop

    @property
    def phase(self) -> Phase:
        return self.phases[self.phase_index]

    @property
    def task_index(self) -> int:
        """The (last) task index of the current phase."""
        return self.phase.task_indices[-1]
