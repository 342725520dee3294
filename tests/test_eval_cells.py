"""eval.cells: `needed` scores the cells the metrics read, `all` the full matrix; same values where both score."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import retain
from retain.errors import ConfigError
from retain.evaluation.cells import cells_to_evaluate
from retain.evaluation.cl_metrics import compute_cl_metrics
from retain.reporting.compare import compare_runs
from tests.conftest import tiny_config

THREE_TASKS = {"benchmark": "demo", "demo_tasks": 3, "demo_train_size": 8, "demo_eval_size": 6}


def test_needed_cells_are_the_seen_tasks_plus_the_next_and_row_zero_in_full() -> None:
    assert cells_to_evaluate("needed", 5, None) == [0, 1, 2, 3, 4]
    assert cells_to_evaluate("needed", 5, 0) == [0, 1]
    assert cells_to_evaluate("needed", 5, 2) == [0, 1, 2, 3]
    assert cells_to_evaluate("needed", 5, 4) == [0, 1, 2, 3, 4]
    assert cells_to_evaluate("all", 5, 0) == [0, 1, 2, 3, 4]
    # without row 0 FWT is undefined: the next task's cell feeds nothing
    assert cells_to_evaluate("needed", 5, 2, with_next=False) == [0, 1, 2]
    assert cells_to_evaluate("all", 5, 2, with_next=False) == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="eval.cells"):
        cells_to_evaluate("some", 5, 0)


def test_an_unknown_cells_mode_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="eval.cells: 'diagonal' is not one of needed, all"):
        retain.run(tiny_config(tmp_path, stream=THREE_TASKS, eval={"cells": "diagonal"}), quiet=True)


def _run(tmp_path: Path, cells: str, model: str = "builtin:tiny-llama") -> Any:
    """Rank scoring: an undertrained tiny model still gets scores other than 0 to compare."""
    config = tiny_config(tmp_path, name=f"cells-{cells}", model=model, stream=THREE_TASKS)
    config["eval"].update(cells=cells, scoring="rank")
    return retain.run(config, quiet=True)


def test_needed_run_equals_the_all_run_where_it_scores_and_gives_the_same_metrics(tmp_path: Path) -> None:
    needed, full = _run(tmp_path, "needed"), _run(tmp_path, "all")
    assert all(v is not None for row in full.matrix.rows for v in row)
    assert len({v for row in full.matrix.rows for v in row}) > 2  # scores to compare, not all 0
    expected_cells = [[0, 1, 2], [0, 1], [0, 1, 2], [0, 1, 2]]
    for row, wanted, full_row in zip(needed.matrix.rows, expected_cells, full.matrix.rows):
        assert [i for i, v in enumerate(row) if v is not None] == wanted
        assert [row[i] for i in wanted] == [full_row[i] for i in wanted]  # same cells -> identical values
    for key, entry in full.metrics.items():
        value = entry["value"] if isinstance(entry, dict) else entry
        assert (needed.metrics[key]["value"] if isinstance(entry, dict) else needed.metrics[key]) == value, key
    for key in ("ap", "bwt", "bwt_trace", "fwt", "forgetting"):
        assert needed.metrics[key]["value"] is not None, key
    assert all(v is not None for v in needed.metrics["ap_t"])
    # absent cells stay absent in the files, the report and the comparison table, never 0
    saved = json.loads((needed.run_dir / "matrix.json").read_text())
    assert saved["rows"][1][2] is None
    csv_row = (needed.run_dir / "matrix.csv").read_text().splitlines()[2].split(",")
    assert csv_row[3:] == [""]
    assert "—" in (needed.run_dir / "report.md").read_text()
    assert (needed.run_dir / "heatmap.png").is_file() and (needed.run_dir / "ap_curve.png").is_file()
    assert not list((needed.run_dir / "predictions").glob("row01_demo3.jsonl"))
    recomputed = compute_cl_metrics(needed.matrix)
    assert recomputed["fwt"]["value"] == full.metrics["fwt"]["value"]
    table = compare_runs([needed.run_dir, full.run_dir])
    assert table.splitlines()[2].split("|")[3:7] == table.splitlines()[3].split("|")[3:7]


@pytest.mark.slow
def test_the_union_matrix_of_a_classifier_run_follows_the_same_cells(tmp_path: Path) -> None:
    needed = _run(tmp_path, "needed", model="builtin:tiny-bert")
    full = _run(tmp_path, "all", model="builtin:tiny-bert")
    assert needed.union_matrix is not None and full.union_matrix is not None
    for row, union_row, full_union in zip(needed.matrix.rows, needed.union_matrix.rows, full.union_matrix.rows):
        assert [v is None for v in row] == [v is None for v in union_row]
        assert [u for u in union_row if u is not None] == [f for u, f in zip(union_row, full_union) if u is not None]
    assert needed.union_metrics["ap"]["value"] == full.union_metrics["ap"]["value"]
    assert needed.union_metrics["bwt"]["value"] == full.union_metrics["bwt"]["value"]
    assert needed.union_metrics["fwt"]["value"] == full.union_metrics["fwt"]["value"]
    assert json.loads((needed.run_dir / "matrix_union.json").read_text())["rows"][1][2] is None


def test_without_row_zero_a_row_scores_only_the_tasks_trained_so_far(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, stream=THREE_TASKS, eval={"before_training": False, "scoring": "rank"})
    result = retain.run(config, quiet=True)
    assert [[v is not None for v in row] for row in result.matrix.rows] == [
        [True, False, False], [True, True, False], [True, True, True]
    ]
    assert result.metrics["bwt"]["value"] is not None and result.metrics["fwt"]["value"] is None


def test_scoring_inputs_go_where_the_model_is() -> None:
    """A model not yet prepared (under sharding, row 0) may sit elsewhere than the accelerator's
    device: the inputs follow the weights, not the accelerator."""
    import torch

    from retain.engine.evaluate import model_device

    gpu_like = torch.device("meta")  # stands for a device the weights are not on
    assert model_device(torch.nn.Linear(2, 2), gpu_like) == torch.device("cpu")
    assert model_device(torch.nn.Linear(2, 2, device="meta"), torch.device("cpu")) == gpu_like
    assert model_device(torch.nn.ReLU(), gpu_like) == gpu_like  # no weights: the fallback


def test_the_unprepared_model_is_scored_on_the_accelerators_device_and_put_back() -> None:
    """Under FSDP the model is on the CPU until the first task prepares it: the "before training"
    row moves it to the accelerator's device for the scoring, then back for the preparation."""
    import torch

    from retain.engine.evaluate import on_scoring_device

    class Recording(torch.nn.Linear):
        moves: list[str] = []

        def to(self, device: torch.device) -> "Recording":  # type: ignore[override]
            self.moves.append(str(device))  # records, does not move (no GPU here)
            return self

    model = Recording(2, 2)
    with on_scoring_device(model, torch.device("cuda", 0)):
        assert model.moves == ["cuda:0"]
    assert model.moves == ["cuda:0", "cpu"]
    model.moves.clear()
    with on_scoring_device(model, torch.device("cpu")):  # already there: nothing moves
        pass
    assert model.moves == []
    with pytest.raises(RuntimeError, match="scoring failed"), on_scoring_device(model, torch.device("cuda", 0)):
        raise RuntimeError("scoring failed")
    assert model.moves == ["cuda:0", "cpu"]  # put back even when scoring fails
