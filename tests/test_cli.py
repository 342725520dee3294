"""The command line: user mistakes give one message and exit 2, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from retain.cli import main
from tests.conftest import tiny_config


def _write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _custom_stream(tmp_path: Path, records: list) -> dict:
    train = tmp_path / "train.json"
    train.write_text(json.dumps(records))
    return {"benchmark": "custom", "tasks": [{"name": "t1", "format": "alpaca", "train": str(train), "eval": str(train)}]}


def test_list_shows_methods_formats_and_benchmarks(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--config"]) == 0
    out = capsys.readouterr().out
    for word in ("seqft", "seqlora", "mtl", "replay", "alpaca", "olora", "trace", "standard-cl", "train.lr"):
        assert word in out
    # every key shows its valid range or choices
    assert "Warm-up optimizer steps per task. Valid: >= 0." in out
    assert "Valid: in [1, 8]." in out and "Valid: one of constant | linear | cosine." in out
    assert "Valid: one of causal | seq2seq | classifier or null." in out
    assert "sari       SARI (higher is better)" in out and "perplexity Perplexity (lower is better)" in out


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda c, p: c.update(methods=["no-such-method"]), "unknown method 'no-such-method'"),
        (lambda c, p: c["model"].update(name_or_path=str(p / "nowhere")), "model.name_or_path"),
        (lambda c, p: c["train"].update(lr="fast"), "train.lr"),
        (lambda c, p: c.update(stream=_custom_stream(p, [{"instruction": "a", "input": "b"}])), "missing field 'output'"),
        (lambda c, p: c.update(methods=["seqft", "mtl", "mtl"]), "twice"),
    ],
)
def test_user_mistakes_exit_2_with_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str], mutate, fragment: str) -> None:
    config = tiny_config(tmp_path)
    mutate(config, tmp_path)
    assert main(["run", str(_write(tmp_path, config)), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert fragment in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs" / "run").exists(), "a failed start left a run folder behind"


def test_malformed_json_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('[{"instruction": "a", "input": "b", "output": "c"},')
    config = tiny_config(tmp_path, stream={"benchmark": "custom", "tasks": [{"name": "t", "train": str(bad), "eval": str(bad)}]})
    assert main(["run", str(_write(tmp_path, config)), "--quiet"]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_run_report_and_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(tmp_path, stream={"demo_train_size": 8, "demo_eval_size": 4})
    path = _write(tmp_path, config)
    assert main(["run", str(path), "--quiet", "name=first"]) == 0
    assert main(["run", str(path), "--quiet", "name=second", "train.lr=1e-3"]) == 0
    capsys.readouterr()
    run_dir = tmp_path / "runs" / "first"
    (run_dir / "report.md").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert "AP" in capsys.readouterr().out
    assert (run_dir / "report.md").is_file()
    assert main(["compare", str(run_dir), str(tmp_path / "runs" / "second")]) == 0
    out = capsys.readouterr().out
    assert "first" in out and "second" in out
    assert main(["report", str(tmp_path / "nothing")]) == 2


def test_raw_text_tasks_and_general_sets_use_perplexity(tmp_path: Path) -> None:
    """Continual pre-training: perplexity per task (lower is better) and a general-ability delta."""
    import retain

    texts = {
        "news": ["the market rose today and stocks went up"] * 6 + ["prices fell as the market closed down"] * 6,
        "sport": ["the team won the match in the final minute"] * 6 + ["the striker scored twice in the game"] * 6,
        "held": ["a quiet day with rain and a grey sky"] * 4,
    }
    for name, lines in texts.items():
        (tmp_path / f"{name}.txt").write_text("\n\n".join(lines))
    config = tiny_config(
        tmp_path,
        stream={
            "benchmark": "custom",
            "tasks": [{"name": n, "format": "text", "train": str(tmp_path / f"{n}.txt"), "eval": str(tmp_path / f"{n}.txt")} for n in ("news", "sport")],
            "general": [{"name": "held", "format": "text", "path": str(tmp_path / "held.txt")}],
        },
        train={"epochs": 3},
    )
    result = retain.run(config, quiet=True)
    rows = result.matrix.rows
    assert result.matrix.higher_is_better == [False, False]
    assert rows[1][0] < rows[0][0], "training on news did not lower its perplexity"
    assert result.metrics["general_delta"]["value"] is not None
    assert json.loads((result.run_dir / "general.json").read_text())["rows"]
    report = (result.run_dir / "report.md").read_text()
    assert "## Perplexity matrix (lower is better)" in report and "AP (mean perplexity, lower is better)" in report
    assert "## General ability (held-out sets)" in report and (result.run_dir / "general.png").is_file()
    assert "| after sport |" in report.split("## General ability")[1]
