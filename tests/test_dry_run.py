"""`retain run --dry-run`: resolved config, stream summary, methods' plan; nothing run or written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from retain.cli import main
from retain.engine.dry_run import describe_run
from tests.conftest import tiny_config


def _long_prompt_stream(tmp_path: Path) -> dict:
    records = [{"instruction": "say", "input": " ".join(["word"] * (30 if i % 3 == 0 else 3)), "output": ["yes", "no"][i % 2]}
               for i in range(12)]
    path = tmp_path / "t.json"
    path.write_text(json.dumps(records))
    return {"benchmark": "custom", "max_source_length": 16, "max_train_per_task": 6,
            "tasks": [{"name": "yn", "format": "alpaca", "train": str(path), "eval": str(path)}]}


def test_dry_run_describes_config_stream_and_methods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tiny_config(tmp_path, stream=_long_prompt_stream(tmp_path), methods=[{"name": "replay", "ratio": 0.5}])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--dry-run", "--set", "learning_rate=0.01"]) == 0
    out = capsys.readouterr().out
    resolved = yaml.safe_load(out.split("# resolved config\n", 1)[1].split("\n\n", 1)[0])
    assert resolved["train"]["lr"] == 0.01 and resolved["eval"]["cells"] == "needed"  # aliases and defaults resolved
    line = next(line for line in out.splitlines() if line.strip().startswith("yn "))
    # 6 train (capped) + 12 eval examples; 4 of the eval prompts (30 words) pass 16 tokens
    cells = line.split()
    assert cells[:4] == ["yn", "accuracy", "6", "12"] and int(cells[4]) >= 4 and cells[5] == "0"
    assert "2 labels: yes, no" in line and "caps: max_train_per_task=6" in out
    assert "replay(ratio=0.5): Experience replay" in out
    assert "not created: dry run" in out
    assert not (tmp_path / "runs").exists()


def test_dry_run_truncation_counts_match_the_encoder(tmp_path: Path) -> None:
    """The dry run counts what the engine's encoder will cut (same tokenizer, same limits)."""
    from retain.config import make_config
    from retain.data.benchmarks import build_stream
    from retain.data.collate import Encoder
    from retain.engine.dry_run import _tokenizer, truncation_counts

    config = make_config(tiny_config(tmp_path, stream=_long_prompt_stream(tmp_path)))
    stream = build_stream(config.stream, config.seed)
    tokenizer = _tokenizer(config, stream)
    (task,) = stream.tasks
    cut_prompts, cut_targets, n = truncation_counts(tokenizer, task, 16, 32)
    encoder = Encoder(tokenizer, "causal", [], 16, 32)
    for example in [*task.train, *task.eval]:
        encoder.encode(example, 0, task)
    assert (cut_prompts, cut_targets, n) == (encoder.truncation.sources, encoder.truncation.targets, encoder.truncation.seen)
    assert cut_prompts > 0


def test_dry_run_says_when_the_folder_exists_and_checks_the_config(tmp_path: Path) -> None:
    config = tiny_config(tmp_path)
    (tmp_path / "runs" / "run").mkdir(parents=True)
    (tmp_path / "runs" / "run" / "x").write_text("")
    assert "run folder exists" in describe_run(config)
    from retain.errors import RetainError

    with pytest.raises(RetainError, match="unknown method"):
        describe_run(tiny_config(tmp_path, methods=["nope"]))


def test_dry_run_imports_neither_torch_nor_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tmp_path)))
    code = (
        "import sys; from retain.cli import main; assert main(['run', sys.argv[1], '--dry-run']) == 0; "
        "heavy = [m for m in ('torch', 'retain.engine.runner', 'retain.models.loading') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "runs").exists()
