"""The run state: rows only through the matrix's own validation, and a checkpoint record that
reads and writes as the one every earlier run folder holds (so they still resume).

``tests/fixtures/checkpoint_state_*.json`` are ``checkpoint/state.json`` files written by the
runner before :class:`~retain.engine.run_state.RunState` existed (the runner assembled the record
by hand): one of a classifier run (with its union matrix), one of a causal run with a general set,
each stopped after its first phase, with an EWC state and a carried optimizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from retain.engine.run_state import RunState
from retain.evaluation.cl_metrics import AccuracyMatrix
from tests.conftest import tiny_config

FIXTURES = Path(__file__).parent / "fixtures"
#: what a checkpoint's state.json adds around the run state's record
RECORD_FRAME = {"format", "files", "sha256"}


def _old_record(name: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"checkpoint_state_{name}.json").read_text())
    return {k: v for k, v in data.items() if k not in RECORD_FRAME}


def _key_tree(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _key_tree(v) for k, v in value.items()}
    return type(value).__name__


@pytest.mark.parametrize("name", ["classifier", "general"])
def test_a_checkpoint_record_written_before_the_run_state_reads_back_unchanged(name: str) -> None:
    record = _old_record(name)
    state = RunState.from_dict(record, [{"lam": 1.0}])
    assert state.to_dict() == record
    assert (state.completed_phases, state.global_step, state.method_states) == (1, 2, [{"lam": 1.0}])
    assert (state.union is not None, state.general is not None) == (name == "classifier", name == "general")


def test_a_checkpoint_written_now_has_the_record_of_one_written_before(tmp_path: Path) -> None:
    """A run stopped after one phase writes the same keys (nested too) as the fixture's, and
    resumes from it to the end."""
    import retain

    records = [{"instruction": f"Say {w}.", "input": "", "output": w} for w in ("yes", "no", "yes", "no")]
    (tmp_path / "general.json").write_text(json.dumps(records))
    config = tiny_config(
        tmp_path, name="now", methods=[{"name": "ewc", "lam": 10.0}],
        stream={"demo_tasks": 2, "demo_train_size": 8, "demo_eval_size": 4,
                "general": [{"name": "say", "format": "alpaca", "eval": str(tmp_path / "general.json")}]},
        train={"reset_optimizer_per_task": False, "scheduler": "linear"},
    )
    stopped = retain.run(config, quiet=True, stop_after=1)
    written = json.loads((stopped.run_dir / "checkpoint" / "state.json").read_text())
    old = json.loads((FIXTURES / "checkpoint_state_general.json").read_text())
    assert _key_tree(written) == {**_key_tree(old), "files": _key_tree(written["files"])}
    assert set(written["files"]) == set(old["files"])
    resumed = retain.run(stopped.run_dir, resume=True, quiet=True)
    assert resumed.matrix.row_labels == ["before training", "after demo1", "after demo2"]
    assert len(json.loads((resumed.run_dir / "general.json").read_text())["rows"]) == 3


def _state(has_initial_row: bool = True) -> RunState:
    return RunState(AccuracyMatrix(["a", "b"], [True, True], has_initial_row=has_initial_row))


def test_rows_go_in_through_the_matrix_validation() -> None:
    state = _state()
    assert state.add_row("evaluated (no training)", None, [None, 50.0], union_scores=[None, 25.0]) == 0
    assert state.add_row("after a", 0, [90.0, None], union_scores=[80.0, None]) == 1
    for matrix in (state.matrix, state.union):
        assert matrix.row_labels == ["evaluated (no training)", "after a"]
        assert matrix.has_initial_row and matrix.phase_task_index == [0]
    assert state.union.task_metrics == ["accuracy", "accuracy"]
    with pytest.raises(ValueError, match="initial row must be the first"):
        state.add_row("before training", None, [1.0, 2.0])
    with pytest.raises(ValueError, match="phase task indices must increase"):
        state.add_row("after a again", 0, [1.0, 2.0])
    with pytest.raises(ValueError, match="1 scores for 2 columns"):
        state.add_row("after b", 1, [1.0])
    assert len(state.matrix.rows) == 2 and state.matrix.phase_task_index == [0]  # refused rows leave nothing


def test_a_union_matrix_begins_with_its_first_row() -> None:
    state = _state(has_initial_row=False)
    state.add_row("after a", 0, [90.0, 10.0], union_scores=[80.0, 5.0])
    assert state.union is not None and not state.union.has_initial_row and state.union.phase_task_index == [0]
    assert RunState.from_dict(state.to_dict()).to_dict() == state.to_dict()
