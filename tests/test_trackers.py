"""train.report_to: steps.jsonl by default, CSV, TensorBoard and W&B through Accelerate's trackers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import retain
from retain.cli import main
from retain.config import make_config
from retain.errors import ConfigError
from tests.conftest import tiny_config


def _records(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text(encoding="utf-8").splitlines()]


def _train_steps(records: list[dict[str, Any]]) -> list[int]:
    return [r["step"] for r in records if "train/loss" in r]


def test_steps_jsonl_and_csv_with_loss_lr_method_terms_and_matrix(traced_run: Any) -> None:
    result = traced_run
    records = _records(result.run_dir)
    train = [r for r in records if "train/loss" in r]
    # 32 examples / batch 8 = 4 steps in task 1; task 2 adds DER's replay batch (8 examples): 5 steps.
    # A record every 2 steps, and at the end of each task (step 9)
    assert _train_steps(records) == [2, 4, 6, 8, 9]
    # the rate each logged step used, under the default schedule (linear decay; 10% warm-up rounds
    # to 0 steps here): task 1's steps 2 and 4 of 4, task 2's steps 2, 4 and 5 (the closing record) of 5
    expected = [3e-3 * 3 / 4, 3e-3 * 1 / 4, 3e-3 * 4 / 5, 3e-3 * 2 / 5, 3e-3 * 1 / 5]
    assert [r["train/lr"] for r in train] == pytest.approx(expected)
    # EWC's penalty and LwF's distillation exist from the second task on, logged as their loss terms
    assert "loss/ewc" not in train[0] and train[-1]["loss/ewc"] > 0
    assert "loss/lwf" not in train[0] and any(r.get("loss/lwf", 0) > 0 for r in train[2:])
    assert any("method/ewc_fisher_sum" in r for r in records)
    rows = [r for r in records if "matrix/row" in r]
    assert [r["matrix/row"] for r in rows] == [0, 1, 2]
    matrix = json.loads((result.run_dir / "matrix.json").read_text())
    assert [r["matrix/demo1"] for r in rows] == pytest.approx([row[0] for row in matrix["rows"]])
    lines = (result.run_dir / "steps.csv").read_text().splitlines()
    assert lines[0] == "step,key,value"
    assert [line.split(",")[0] for line in lines if ",train/loss," in line] == ["2", "4", "6", "8", "9"]


def test_tensorboard_tracker(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = retain.run(tiny_config(tmp_path, train={"report_to": ["jsonl", "tensorboard"]}), quiet=True)
    events = EventAccumulator(str(result.run_dir / "tensorboard"))
    events.Reload()
    assert "train/loss" in events.Tags()["scalars"]
    assert [e.step for e in events.Scalars("matrix/demo1")] == [0, 4, 8]
    assert (result.run_dir / "steps.jsonl").is_file()


def test_wandb_tracker_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = retain.run(tiny_config(tmp_path, train={"report_to": ["wandb"]}), quiet=True)
    runs = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_bad_report_to_values(tmp_path: Path) -> None:
    assert make_config({"train": {"report_to": "csv"}}).train.report_to == ["csv"]
    aliased = make_config({"report_to": ["tensorboard"], "logging_steps": 5}).train  # HF TrainingArguments names
    assert (aliased.report_to, aliased.logging_steps) == (["tensorboard"], 5)
    for value, message in ((["mlflw"], r"train\.report_to\[0\]: .mlflw. is not one of"), (["none", "csv"], "cannot be combined")):
        with pytest.raises(ConfigError, match=message):
            make_config({"train": {"report_to": value}})


def test_missing_tracker_package_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(tiny_config(tmp_path, train={"report_to": ["jsonl", "wandb"]})))
    assert main(["run", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "train.report_to: wandb needs the wandb package" in err and "Traceback" not in err
    assert not (tmp_path / "runs" / "run").exists()
