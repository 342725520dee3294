"""retain export: the kept model loads with plain transformers / PEFT and predicts what retain scored."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

import retain
from retain.cli import main
from retain.config import make_config
from retain.data.benchmarks import build_stream
from retain.data.collate import Encoder
from retain.evaluation.scoring import score_task
from tests.conftest import tiny_config


def _predictions(run_dir: Path, row: int, task: str) -> list[str]:
    lines = (run_dir / "predictions" / f"row{row:02d}_{task}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line)["prediction"] for line in lines]


def _rescore(model: Any, tokenizer: Any, config: dict[str, Any], kind: str) -> dict[str, list[str]]:
    """Score every task's eval set with ``model`` (loaded without retain) through retain's scorer."""
    run_config = make_config(config)
    stream = build_stream(run_config.stream, run_config.seed)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)] if kind == "classifier" else []
    encoder = Encoder(tokenizer, kind, labels, run_config.stream.max_source_length, run_config.stream.max_target_length)
    model.eval()
    out = {}
    with torch.no_grad():
        for index, task in enumerate(stream.tasks):
            items = encoder.encode_task(task, index, "eval")
            result = score_task(model, encoder, task, items, task.eval, 16, torch.device("cpu"))
            out[task.name] = [p["prediction"] for p in result.predictions]
    return out


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Any]:
    tmp = tmp_path_factory.mktemp("full")
    config = tiny_config(tmp, name="full", eval={"cells": "all"}, output={"keep_task_models": True},
                         train={"report_to": "none"})
    return config, retain.run(config, quiet=True)


def test_run_returns_the_trained_model(full_run: tuple[dict[str, Any], Any]) -> None:
    config, result = full_run
    # (train.report_to: none) no tracker file
    assert not (result.run_dir / "steps.jsonl").exists() and not (result.run_dir / "steps.csv").exists()
    assert isinstance(result.model, torch.nn.Module) and result.tokenizer is not None
    rescored = _rescore(result.model, result.tokenizer, config, "causal")
    assert rescored["demo2"] == _predictions(result.run_dir, 2, "demo2")


@pytest.mark.parametrize("after_task", [1, 2])
def test_export_full_model_loads_with_transformers_and_predicts_the_same(
    full_run: tuple[dict[str, Any], Any], tmp_path: Path, after_task: int
) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config, result = full_run
    out = tmp_path / "export"
    assert main(["export", str(result.run_dir), str(out), "--after-task", str(after_task)]) == 0
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    rescored = _rescore(model, tokenizer, config, "causal")
    for task in ("demo1", "demo2"):
        assert rescored[task] == _predictions(result.run_dir, after_task, task)
    # the two kept models differ: task 2 changed the weights
    if after_task == 1:
        assert rescored["demo2"] != _predictions(result.run_dir, 2, "demo2") or rescored["demo1"] != _predictions(result.run_dir, 2, "demo1")


def test_export_lora_classifier_as_adapter_and_merged(tmp_path: Path) -> None:
    from peft import AutoPeftModelForSequenceClassification, PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = tiny_config(tmp_path, name="lora", model="builtin:tiny-bert", methods=["seqlora"],
                         eval={"cells": "all"})
    config["model"]["lora"] = {"enabled": True}
    result = retain.run(config, quiet=True)
    expected = {t: _predictions(result.run_dir, 2, t) for t in ("demo1", "demo2")}

    adapter = retain.export(result.run_dir, tmp_path / "adapter")
    assert adapter.form == "adapter" and (adapter.out / "adapter_config.json").is_file()
    base = AutoModelForSequenceClassification.from_pretrained(adapter.out / "base")
    model = PeftModel.from_pretrained(base, adapter.out)
    tokenizer = AutoTokenizer.from_pretrained(adapter.out)
    assert _rescore(model, tokenizer, config, "classifier") == expected
    # the adapter config names the exported base, so PEFT's auto class finds it alone
    auto = AutoPeftModelForSequenceClassification.from_pretrained(adapter.out)
    assert _rescore(auto, tokenizer, config, "classifier") == expected

    merged = retain.export(result.run_dir, tmp_path / "merged", merge=True)
    assert merged.form == "model" and not (merged.out / "adapter_config.json").exists()
    plain = AutoModelForSequenceClassification.from_pretrained(merged.out)
    assert _rescore(plain, AutoTokenizer.from_pretrained(merged.out), config, "classifier") == expected


def test_export_olora_merges_every_adapter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = tiny_config(tmp_path, name="olora", methods=["olora"], eval={"cells": "all"}, output={"keep_task_models": True})
    config["model"]["lora"] = {"enabled": True}
    result = retain.run(config, quiet=True)
    # every task's adapter exists from set-up; the model kept after task 1 holds task 1's only
    first = json.loads((result.run_dir / "models" / "task-01" / "retain_model.json").read_text())
    assert first["adapters"] == ["default"]
    assert not (result.run_dir / "models" / "task-01" / "task1").exists()
    assert main(["export", str(result.run_dir), str(tmp_path / "first"), "--after-task", "1"]) == 0
    # PEFT loads one adapter per folder: the unmerged export is refused with the way out
    assert main(["export", str(result.run_dir), str(tmp_path / "adapter")]) == 2
    assert "--merge" in capsys.readouterr().err
    assert not (tmp_path / "adapter").exists()
    assert main(["export", str(result.run_dir), str(tmp_path / "merged"), "--merge"]) == 0
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    rescored = _rescore(model, AutoTokenizer.from_pretrained(tmp_path / "merged"), config, "causal")
    assert rescored == {t: _predictions(result.run_dir, 2, t) for t in ("demo1", "demo2")}


def test_export_refusals(full_run: tuple[dict[str, Any], Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, result = full_run

    def refused(*argv: str) -> str:
        assert main(["export", *argv]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return err

    stranger = tmp_path / "stranger"
    stranger.mkdir()
    assert "not a retain run folder" in refused(str(stranger), str(tmp_path / "o1"))
    assert "no such run folder" in refused(str(tmp_path / "missing"), str(tmp_path / "o1"))
    assert "tasks 1 to 2" in refused(str(result.run_dir), str(tmp_path / "o1"), "--after-task", "3")
    assert "nothing to merge" in refused(str(result.run_dir), str(tmp_path / "o1"), "--merge")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep me")
    assert "not an empty folder" in refused(str(result.run_dir), str(busy))
    assert (busy / "x").read_text() == "keep me"
    assert not (tmp_path / "o1").exists()


def test_unfinished_run_is_refused_then_resumed_without_duplicate_steps(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An unfinished run is not exported; its resume (steps.jsonl appended, never a step twice) is."""
    config = tiny_config(tmp_path, name="partial", train={"logging_steps": 1})
    retain.run(config, quiet=True, stop_after=1)
    run_dir = tmp_path / "runs" / "partial"
    assert main(["export", str(run_dir), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "unfinished" in err and f"retain run --resume {run_dir}" in err
    # what a crash in task 2 leaves: records past the checkpoint's step, the last one cut short
    with open(run_dir / "steps.jsonl", "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"step": 5, "train/loss": 9.0}) + "\n" + '{"step": 6, "train/lo')
    retain.run(run_dir, resume=True, quiet=True)
    records = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in records if "train/loss" in r] == list(range(1, 9))  # 4 steps per task, each once
    assert [r["matrix/row"] for r in records if "matrix/row" in r] == [0, 1, 2]
    assert all(r.get("train/loss") != 9.0 for r in records)

    assert main(["export", str(run_dir), str(tmp_path / "out"), "--after-task", "1"]) == 2
    assert "output.keep_task_models: true" in capsys.readouterr().err
    assert main(["export", str(run_dir), str(tmp_path / "out")]) == 0
    assert "after task 2 (demo2)" in capsys.readouterr().out
    assert sorted(p.name for p in (run_dir / "models").iterdir()) == ["task-02"]


def test_export_lora_on_a_named_base_points_at_it(full_run: tuple[dict[str, Any], Any], tmp_path: Path) -> None:
    """A base loaded by name or path (as from the Hub) is named, not copied, by the adapter export."""
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = retain.export(full_run[1].run_dir, tmp_path / "base_model").out
    config = tiny_config(tmp_path, name="named", model=str(base_dir), methods=["seqlora"], eval={"cells": "all"})
    config["model"]["lora"] = {"enabled": True}
    result = retain.run(config, quiet=True)
    expected = {t: _predictions(result.run_dir, 2, t) for t in ("demo1", "demo2")}
    adapter = retain.export(result.run_dir, tmp_path / "adapter").out
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == str(base_dir)
    assert not (adapter / "base" / "model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(adapter)
    assert _rescore(AutoPeftModelForCausalLM.from_pretrained(adapter), tokenizer, config, "causal") == expected
    merged = retain.export(result.run_dir, tmp_path / "merged", merge=True).out
    assert _rescore(AutoModelForCausalLM.from_pretrained(merged), tokenizer, config, "causal") == expected


_WRITER = """
import sys, time
from pathlib import Path
from retain.exporting.export_run import export_folder
with export_folder(Path(sys.argv[1])) as tmp:
    (tmp / "model.safetensors").write_bytes(b"x" * 1000)
    print(tmp.name, flush=True)
    time.sleep(120)
"""


def test_a_killed_export_leaves_a_temp_folder_the_next_export_removes(
    full_run: tuple[dict[str, Any], Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """kill -9 mid-write leaves ``.<out>.tmp-<pid>-*``; it stays while its writer lives and goes
    with the next export to that destination; other hidden folders there are never touched."""
    import os
    import signal
    import subprocess
    import sys

    from retain.exporting.export_run import STALE_AFTER_S, remove_stale_temps

    out = tmp_path / "out"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        leftover = tmp_path / writer.stdout.readline().strip()
        assert leftover.name.startswith(f".out.tmp-{writer.pid}-") and leftover.is_dir()
        assert remove_stale_temps(out) == [] and leftover.is_dir(), "a live writer's folder was removed"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait()
    assert leftover.is_dir() and not out.exists()  # what the kill leaves
    legacy_old, legacy_new = tmp_path / ".out.tmp-ab12cd_3", tmp_path / ".out.tmp-zz99yy_0"
    for folder in (legacy_old, legacy_new, tmp_path / ".out.tmp-mine", tmp_path / ".other.tmp-1-0123456789ab"):
        folder.mkdir()
    old = os.stat(legacy_old).st_mtime - STALE_AFTER_S - 60
    os.utime(legacy_old, (old, old))
    assert main(["export", str(full_run[1].run_dir), str(out)]) == 0
    capsys.readouterr()
    assert (out / "model.safetensors").stat().st_size > 1000, "the export is the real model"
    hidden = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("."))
    assert hidden == [".other.tmp-1-0123456789ab", ".out.tmp-mine", ".out.tmp-zz99yy_0"]
