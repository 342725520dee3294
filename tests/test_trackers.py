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
    # the gradient norm before clipping, per record, and per source where a step has one source:
    # task 1 trains new batches only; task 2 adds DER's replay micro-batch as its own step
    assert all(r["train/grad_norm"] > 0 for r in train)
    assert all("train/grad_norm/new" in r for r in train[:2]) and not any("train/grad_norm/replay" in r for r in train[:2])
    assert any(r.get("train/grad_norm/replay", 0) > 0 for r in train[2:])
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


class _RecordingAccelerator:
    """Stands in for Accelerate's: has a tracker and keeps what is logged."""

    trackers = ["jsonl"]

    def __init__(self) -> None:
        self.logged: list[tuple[int, dict[str, Any]]] = []

    def log(self, values: dict[str, Any], step: int) -> None:
        self.logged.append((step, values))


def test_grad_norm_is_a_mean_over_steps_and_per_source_over_single_source_steps() -> None:
    import torch

    from retain.engine.step_log import StepLog

    accelerator = _RecordingAccelerator()
    log = StepLog(accelerator, every=2)
    for _ in range(3):  # three micro-batches (grad_accum 3) make one step: the norm counts once
        log.add(torch.tensor(1.0), {})
    log.add_grad_norm(torch.tensor(2.0), {"new"})
    log.add(torch.tensor(1.0), {})
    log.add_grad_norm(torch.tensor(6.0), {"new", "replay"})  # a mixed step: overall mean only
    log.add_grad_norm(None, {"replay"})  # a backend that reports none
    log.step_done(2, optimizer=None)
    (step, values), = accelerator.logged
    assert step == 2 and values["train/grad_norm"] == pytest.approx(4.0) and values["train/grad_norm/new"] == pytest.approx(2.0)
    assert "train/grad_norm/replay" not in values and values["train/loss"] == pytest.approx(1.0)
    log.add(torch.tensor(1.0), {})
    log.step_done(3, optimizer=None, force=True)  # the next record starts from nothing
    assert "train/grad_norm" not in accelerator.logged[-1][1]


def test_logged_grad_norm_is_before_clipping_and_measured_without_it(tmp_path: Path) -> None:
    clipped = retain.run(tiny_config(tmp_path / "a", train={"max_grad_norm": 1e-6}), quiet=True)
    unclipped = retain.run(tiny_config(tmp_path / "b", train={"max_grad_norm": None}), quiet=True)
    for result in (clipped, unclipped):
        norms = [r["train/grad_norm"] for r in _records(result.run_dir) if "train/loss" in r]
        assert norms and min(norms) > 1e-3  # the norm the step had, not the bound it was clipped to
