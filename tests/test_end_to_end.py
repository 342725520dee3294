"""Tiny end-to-end runs for every model kind, full fine-tuning and LoRA, plus the demo's promise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import retain
from retain.errors import MethodError
from tests.conftest import BUILTIN_BY_KIND, tiny_config

CASES = [(kind, method) for kind in ("causal", "seq2seq", "classifier") for method in ("seqft", "seqlora")]


@pytest.mark.parametrize(("kind", "method"), CASES)
def test_tiny_run_writes_the_run_folder(tmp_path: Path, kind: str, method: str) -> None:
    config = tiny_config(tmp_path, model=BUILTIN_BY_KIND[kind], methods=[method])
    result = retain.run(config, quiet=True)
    run_dir = result.run_dir
    matrix = json.loads((run_dir / "matrix.json").read_text())
    assert len(matrix["rows"]) == 3  # before training + one row per task
    assert all(len(row) == 2 for row in matrix["rows"])
    for name in ("config.yaml", "matrix.csv", "metrics.json", "report.md", "heatmap.png", "ap_curve.png", "run.log"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["ap"]["value"] == pytest.approx(sum(matrix["rows"][-1]) / 2)
    assert (run_dir / "checkpoint" / "model.safetensors").is_file()
    assert matrix["task_metrics"] == ["accuracy", "accuracy"] and "la" in metrics
    predictions = sorted((run_dir / "predictions").glob("*.jsonl"))
    record = json.loads(predictions[0].read_text().splitlines()[0])
    assert record["prompt"] and {"target", "prediction", "score"} <= set(record)  # the prompt beside the answer


def test_lora_checkpoint_holds_only_adapter_tensors(tmp_path: Path) -> None:
    from safetensors.torch import load_file

    result = retain.run(tiny_config(tmp_path, methods=["seqlora"]), quiet=True)
    names = load_file(str(result.run_dir / "checkpoint" / "model.safetensors")).keys()
    assert names and all("lora_" in n for n in names)


def test_mtl_has_one_training_row(tmp_path: Path) -> None:
    result = retain.run(tiny_config(tmp_path, methods=["mtl"]), quiet=True)
    assert len(result.matrix.rows) == 2
    assert result.metrics["bwt"]["value"] is None


def test_impossible_combination_is_rejected_before_training(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, methods=["seqft", "seqlora"])
    with pytest.raises(MethodError, match="seqft"):
        retain.run(config, quiet=True)
    assert not (tmp_path / "runs" / "run").exists()


def test_existing_run_folder_is_not_overwritten(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, stream={"demo_train_size": 8, "demo_eval_size": 4})
    retain.run(config, quiet=True)
    with pytest.raises(retain.errors.RetainError, match="--resume"):
        retain.run(config, quiet=True)


def test_demo_learns_and_forgets(tmp_path: Path) -> None:
    """The embedded demo: each task learned (diagonal >= 80) and clearly forgotten (BWT < -20)."""
    from retain.cli import _demo_config_path

    result = retain.run(_demo_config_path(), overrides=[f"output_dir={tmp_path}"], quiet=True)
    rows = result.matrix.rows[1:]
    diagonal = [rows[i][i] for i in range(len(rows))]
    assert min(diagonal) >= 80, diagonal
    assert result.metrics["bwt"]["value"] < -20


def test_gradient_accumulation_and_bf16_autocast(tmp_path: Path) -> None:
    """grad_accum=2 halves the optimizer steps; bf16 mixed precision runs (emulated on CPU)."""
    config = tiny_config(
        tmp_path, stream={"demo_train_size": 32, "demo_eval_size": 4},
        train={"grad_accum": 2, "mixed_precision": "bf16"},
    )
    result = retain.run(config, quiet=True)
    log = (result.run_dir / "run.log").read_text()
    assert "4 micro-batches, 2 steps" in log
    assert all(v is not None for v in result.matrix.rows[-1])


def test_a_classifier_run_within_task_labels_also_records_the_union_matrix(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, model="builtin:tiny-bert", stream={"demo_tasks": 2, "demo_train_size": 16, "demo_eval_size": 8})
    result = retain.run(config, quiet=True)
    assert result.union_matrix is not None and result.union_metrics is not None
    assert len(result.union_matrix.rows) == len(result.matrix.rows)
    for task_row, union_row in zip(result.matrix.rows, result.union_matrix.rows):
        # right among all labels implies right among the task's own labels
        assert all(u <= t for t, u in zip(task_row, union_row))
    saved = json.loads((result.run_dir / "metrics_union.json").read_text())
    assert saved["ap"]["value"] == result.union_metrics["ap"]["value"]
    assert "Class-incremental scores" in (result.run_dir / "report.md").read_text()
    stopped = retain.run({**config, "name": "stopped"}, quiet=True, stop_after=1)
    resumed = retain.run(stopped.run_dir, resume=True, quiet=True)
    assert resumed.union_matrix is not None and resumed.union_matrix.rows == result.union_matrix.rows
    config["eval"]["label_space"] = "union"
    config["name"] = "union"
    union_run = retain.run(config, quiet=True)
    assert union_run.union_matrix is None and not (union_run.run_dir / "matrix_union.json").exists()
