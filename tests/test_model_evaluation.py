"""retain eval: a saved or exported model (and adapter) scored on a config's tasks and general
sets without training, with the same metrics and files as a run's rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import retain
from retain.cli import main
from retain.engine.model_evaluation import EVALUATED_ROW
from tests.conftest import tiny_config


def _general(tmp_path: Path) -> list[dict[str, Any]]:
    records = [{"instruction": f"Say {w}.", "input": "", "output": w} for w in ("yes", "no", "yes", "no")]
    path = tmp_path / "general.json"
    path.write_text(json.dumps(records), encoding="utf-8")
    return [{"name": "say", "format": "alpaca", "eval": str(path), "infer_labels": False}]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any, Path]:
    tmp = tmp_path_factory.mktemp("trained")
    config = tiny_config(tmp, name="trained", eval={"cells": "all"}, train={"report_to": "none"},
                         stream={"general": _general(tmp)})
    result = retain.run(config, quiet=True)
    exported = retain.export(result.run_dir, tmp / "exported").out
    return config, result, exported


def test_an_exported_model_scores_what_its_run_scored(trained: tuple[dict[str, Any], Any, Path]) -> None:
    config, result, exported = trained
    evaluation = retain.evaluate(config, model=str(exported), quiet=True)
    folder = evaluation.run_dir
    assert folder == result.run_dir.parent / "trained-eval"
    matrix = json.loads((folder / "matrix.json").read_text())
    assert matrix["row_labels"] == [EVALUATED_ROW] and matrix["has_initial_row"]
    assert matrix["rows"][0] == result.matrix.rows[-1]  # the same model, the same scores
    run_general = json.loads((result.run_dir / "general.json").read_text())
    assert json.loads((folder / "general.json").read_text())["rows"] == [run_general["rows"][-1]]
    for task in ("demo1", "demo2"):  # predictions, one file per task, as a run's row 2
        scored = (folder / "predictions" / f"row00_{task}.jsonl").read_text()
        assert scored == (result.run_dir / "predictions" / f"row02_{task}.jsonl").read_text()
    assert json.loads((folder / "evaluation.json").read_text()) == {"model": str(exported), "adapter": None}
    report = (folder / "report.md").read_text()
    assert f"**model**: {exported}" in report and "evaluated without training (retain eval)" in report
    assert not (folder / "checkpoint").exists()


def test_the_zero_shot_row_is_the_run_s_row_0(trained: tuple[dict[str, Any], Any, Path], tmp_path: Path) -> None:
    config, result, _ = trained
    evaluation = retain.evaluate(config, name="zero-shot", quiet=True)  # the config's own (untrained) model
    assert evaluation.matrix.rows == [result.matrix.rows[0]]


def test_a_lora_adapter_is_loaded_onto_its_base(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, name="lora", model="builtin:tiny-bert", methods=["seqlora"], eval={"cells": "all"},
                         train={"report_to": "none"})
    config["model"]["lora"] = {"enabled": True}
    result = retain.run(config, quiet=True)
    adapter = retain.export(result.run_dir, tmp_path / "adapter").out
    # no --model: the adapter's own base (the exported base/ folder) is the model
    evaluation = retain.evaluate(config, adapter=str(adapter), quiet=True)
    assert evaluation.matrix.rows == [result.matrix.rows[-1]]
    assert json.loads((evaluation.run_dir / "evaluation.json").read_text())["adapter"] == str(adapter)


def test_command_line_folder_rules_and_refusals(trained: tuple[dict[str, Any], Any, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    config, _, exported = trained
    config = {**config, "output_dir": str(tmp_path / "runs")}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(config))
    yaml_path = tmp_path / "cfg.yaml"
    yaml_path.write_text(path.read_text())  # JSON is YAML
    assert main(["eval", str(yaml_path), "--model", str(exported), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert EVALUATED_ROW in out and "mean over the 2 tasks:" in out and "general sets: say" in out
    folder = tmp_path / "runs" / "trained-eval"
    # a second evaluation into the same folder needs --overwrite; the folder cannot be resumed
    assert main(["eval", str(yaml_path), "--model", str(exported), "--quiet"]) == 2
    assert "run folder exists" in capsys.readouterr().err
    assert main(["run", "--resume", str(folder)]) == 2
    assert "a `retain eval` folder (one row, no training): nothing to resume" in capsys.readouterr().err
    assert main(["eval", str(yaml_path), "--model", str(exported), "--overwrite", "--quiet"]) == 0
    capsys.readouterr()
    # an adapter folder that is not one, and a model that does not exist: one line, no folder left
    assert main(["eval", str(yaml_path), "--adapter", str(tmp_path), "--name", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--adapter: {tmp_path} has no adapter_config.json" in err
    assert main(["eval", str(yaml_path), "--model", str(tmp_path / "nowhere"), "--name", "bad"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.name_or_path: cannot load" in err
    assert not (tmp_path / "runs" / "bad").exists()


def test_a_classifier_head_with_other_classes_is_refused(tmp_path: Path) -> None:
    from retain.errors import ConfigError

    config = tiny_config(tmp_path, name="cls", model="builtin:tiny-bert")
    run = retain.run(config, quiet=True)
    exported = retain.export(run.run_dir, tmp_path / "cls-export").out
    saved = json.loads((exported / "config.json").read_text())
    saved["id2label"] = {str(i): f"other{i}" for i in range(len(saved["id2label"]))}
    saved["label2id"] = {v: int(k) for k, v in saved["id2label"].items()}
    (exported / "config.json").write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match=r"classifier head has the classes other0, .*the stream's tasks"):
        retain.evaluate(config, model=str(exported), quiet=True)
