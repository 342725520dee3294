"""Reports that do not assume accuracy: titles, scales, AP wording, scoring line, general sets,
never-learned warnings, and learning accuracy (LA) beside AP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from retain.evaluation.cl_metrics import AccuracyMatrix, GeneralScores, compute_cl_metrics, never_learned
from retain.reporting.plots import heatmap_scale
from retain.reporting.report import render_report
from retain.reporting.run_folder import RunFolder


def _matrix(metrics: list[str], rows: list[list[float]], higher: list[bool] | None = None) -> AccuracyMatrix:
    names = [f"t{i}" for i in range(len(metrics))]
    higher = higher if higher is not None else [m != "perplexity" for m in metrics]
    matrix = AccuracyMatrix(names, higher, task_metrics=metrics)
    matrix.add_initial_row(rows[0])
    for i, row in enumerate(rows[1:]):
        matrix.add_training_row(i, row)
    return matrix


def _folder(path: Path, matrix: AccuracyMatrix, scoring: str = "generate") -> RunFolder:
    folder = RunFolder(path)
    folder.write_config({"name": path.name, "model": {"name_or_path": "builtin:tiny-llama", "kind": "causal"},
                         "methods": ["seqft"], "stream": {"benchmark": "custom"}, "eval": {"scoring": scoring}})
    folder.write_matrix(matrix)
    return folder


def test_a_perplexity_stream_is_worded_and_drawn_as_perplexity(tmp_path: Path) -> None:
    matrix = _matrix(["perplexity", "perplexity"], [[300.0, 280.0], [40.0, 250.0], [90.0, 30.0]])
    _folder(tmp_path / "ppl", matrix)
    text = render_report(tmp_path / "ppl")
    report = (tmp_path / "ppl" / "report.md").read_text()
    assert "## Perplexity matrix (lower is better)" in report and "Accuracy matrix" not in report
    assert "0-100" not in report and "perplexity: its own scale, unbounded, lower is better" in report
    assert "**scoring**: perplexity of the reference text" in report and "exact match" not in report
    assert "| AP (mean perplexity, lower is better) | 60.00 |" in report and "not an accuracy" in report
    assert "AP (mean perplexity, lower is better)" in text
    _, _, vmin, vmax, cmap, bar = heatmap_scale(matrix)
    assert (vmin, vmax, cmap, bar) == (None, None, "viridis_r", "perplexity (lower is better)")


def test_an_accuracy_stream_keeps_the_0_100_scale_and_plain_ap(tmp_path: Path) -> None:
    matrix = _matrix(["accuracy", "accuracy"], [[10.0, 20.0], [80.0, 25.0], [70.0, 90.0]])
    _folder(tmp_path / "acc", matrix, scoring="rank")
    render_report(tmp_path / "acc")
    report = (tmp_path / "acc" / "report.md").read_text()
    assert "## Accuracy matrix" in report and "accuracy: 0-100, higher is better" in report
    assert "**scoring**: rank classification (the most likely label), accuracy" in report
    assert "| AP | 80.00 |" in report and "| LA (learning accuracy) | 85.00 |" in report
    assert "## Warnings" not in report
    assert heatmap_scale(matrix)[2:5] == (0.0, 100.0, "viridis")


def test_mixed_metrics_name_each_tasks_metric_and_say_ap_mixes_scales(tmp_path: Path) -> None:
    matrix = _matrix(["accuracy", "rouge_l", "perplexity"], [[10.0, 5.0, 300.0], [80.0, 6.0, 290.0], [70.0, 40.0, 280.0], [60.0, 35.0, 20.0]])
    _folder(tmp_path / "mix", matrix)
    render_report(tmp_path / "mix")
    report = (tmp_path / "mix" / "report.md").read_text()
    assert "## Score matrix" in report
    assert ("**scoring**: greedy generation, exact match after normalisation (t0); greedy generation, ROUGE-L (t1); "
            "perplexity of the reference text") in report
    assert "| AP (mixed scales) |" in report
    colours, values, vmin, vmax, _, bar = heatmap_scale(matrix)
    assert (vmin, vmax) == (0.0, 100.0) and "relative within the column" in bar
    assert float(colours[3, 2]) == 100.0 and float(colours[0, 2]) == 0.0  # lowest perplexity = best
    assert float(values[3, 2]) == 20.0  # the numbers drawn stay raw


def test_matrix_files_without_metric_names_still_report(tmp_path: Path) -> None:
    """Run folders written before task_metrics was recorded: the direction decides."""
    matrix = AccuracyMatrix(["a", "b"], [True, False], ["before training", "after a"], [[1.0, 50.0], [90.0, 40.0]], True, [0])
    assert "task_metrics" not in matrix.to_dict()
    _folder(tmp_path / "old", matrix)
    render_report(tmp_path / "old")
    assert "## Score matrix" in (tmp_path / "old" / "report.md").read_text()


def test_general_sets_are_shown_row_by_row_with_a_plot(tmp_path: Path) -> None:
    matrix = _matrix(["accuracy", "accuracy"], [[10.0, 20.0], [80.0, 25.0], [70.0, 90.0]])
    folder = _folder(tmp_path / "g", matrix)
    folder.write_general(GeneralScores(["held", "wiki"], [True, False], [[40.0, 30.0], [41.0, 31.5], [39.0, 33.0]],
                                       metrics=["accuracy", "perplexity"]))
    render_report(tmp_path / "g")
    report = (tmp_path / "g" / "report.md").read_text()
    assert "## General ability (held-out sets)" in report
    assert "| row | held | wiki (↓) |" in report and "| before training | 40.00 | 30.00 |" in report
    assert "wiki: perplexity (lower is better)" in report
    assert (tmp_path / "g" / "general.png").read_bytes()[:4] == b"\x89PNG"


def test_a_task_never_learned_is_warned_about(tmp_path: Path) -> None:
    # t1 (accuracy) drops when trained; t2 (perplexity) rises when trained: neither was learned
    matrix = _matrix(["accuracy", "accuracy", "perplexity"],
                     [[10.0, 30.0, 100.0], [80.0, 30.0, 100.0], [70.0, 25.0, 100.0], [60.0, 20.0, 120.0]])
    assert [name for name, _, _ in never_learned(matrix)] == ["t1", "t2"]
    _folder(tmp_path / "n", matrix)
    text = render_report(tmp_path / "n")
    report = (tmp_path / "n" / "report.md").read_text()
    assert "## Warnings" in report and "task t1 was never learned: 25.00 right after training it, 30.00 before" in report
    assert "task t2 was never learned" in text and "task t0" not in report.split("## Warnings")[1].split("##")[0]
    # without row 0 nothing can be judged
    no_row0 = AccuracyMatrix(["a"], [True], ["after a"], [[0.0]], False, [0])
    assert never_learned(no_row0) == []


def test_learning_accuracy_in_metrics_json_and_the_union_metrics(tmp_path: Path) -> None:
    matrix = _matrix(["accuracy", "accuracy"], [[10.0, 20.0], [80.0, 25.0], [70.0, 90.0]])
    folder = _folder(tmp_path / "la", matrix)
    union = _matrix(["accuracy", "accuracy"], [[5.0, 5.0], [60.0, 0.0], [20.0, 70.0]])
    folder.write_matrix(union, variant="union")
    render_report(tmp_path / "la")
    metrics = json.loads((tmp_path / "la" / "metrics.json").read_text())
    assert metrics["la"]["value"] == pytest.approx(85.0) and "a[i][i]" in metrics["la"]["definition"]
    assert json.loads((tmp_path / "la" / "metrics_union.json").read_text())["la"]["value"] == pytest.approx(65.0)
    # undefined for a multi-task run (one row, no diagonal per task)
    mtl = AccuracyMatrix(["a", "b"], [True, True], ["all"], [[50.0, 60.0]], False, [1])
    assert compute_cl_metrics(mtl)["la"]["value"] is None


def test_a_run_logs_a_task_it_never_learned(tmp_path: Path) -> None:
    import retain
    from tests.conftest import tiny_config

    config = tiny_config(tmp_path, stream={"demo_train_size": 8, "demo_eval_size": 4}, train={"lr": 1e-12})
    result = retain.run(config, quiet=True)
    diagonal_not_better = [n for n, _, _ in never_learned(result.matrix)]
    assert diagonal_not_better, "a learning rate of 1e-12 learned something"
    log = (result.run_dir / "run.log").read_text()
    assert f"task {diagonal_not_better[0]} was never learned" in log
    assert "## Warnings" in (result.run_dir / "report.md").read_text()
