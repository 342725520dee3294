"""Hugging Face key names as config aliases, the shipped example configs (`retain init`), `--version`."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import retain
from retain.cli import main
from retain.config import make_config
from retain.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_hf_names_in_yaml_and_overrides_set_the_canonical_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "learning_rate": 2e-5, "num_train_epochs": 3, "per_device_train_batch_size": 4,
        "train": {"gradient_accumulation_steps": 2, "lr_scheduler_type": "constant_with_warmup"},
        "warmup_ratio": 0.1,
    }))
    config = make_config(path)
    assert (config.train.lr, config.train.epochs, config.train.batch_size) == (2e-5, 3.0, 4)
    assert (config.train.grad_accum, config.train.scheduler, config.train.warmup_ratio) == (2, "constant", 0.1)
    assert "learning_rate" not in config.to_dict() and "learning_rate" not in config.to_dict()["train"]
    # an override under the alias replaces the file's canonical value (and the other way round)
    assert make_config({"train": {"lr": 1.0}}, ["learning_rate=0.5"]).train.lr == 0.5
    assert make_config({"learning_rate": 1.0}, ["train.lr=0.25"]).train.lr == 0.25
    assert make_config(None, ["lr_scheduler_type=cosine"]).train.scheduler == "cosine"


@pytest.mark.parametrize(
    ("data", "overrides", "fragment"),
    [
        ({"learning_rate": 1e-4, "train": {"lr": 1e-3}}, [], "learning_rate (alias of train.lr) and train.lr are both given"),
        ({"train": {"num_train_epochs": 2, "epochs": 1}}, [], "train.num_train_epochs (alias of train.epochs)"),
        ({}, ["learning_rate=1e-4", "train.lr=1e-3"], "learning_rate and train.lr both set train.lr"),
        ({"learning_rate": "fast"}, [], "train.lr: expected a number"),
    ],
)
def test_alias_mistakes_are_clear(data: dict, overrides: list, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        make_config(data, overrides)
    assert fragment in str(info.value)


def test_alias_conflict_from_the_cli_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"learning_rate": 1e-4, "train": {"lr": 1e-3}}))
    assert main(["run", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "c.yaml: learning_rate (alias of train.lr) and train.lr are both given" in err
    assert "Traceback" not in err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"retain {retain.__version__}"


def test_every_example_config_ships_and_init_copies_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from retain.examples import example_configs

    shipped = set(example_configs())
    assert shipped == {p.stem for p in (REPO / "configs").glob("*.yaml")}
    assert main(["init", "demo-replay", str(tmp_path)]) == 0
    copied = tmp_path / "demo-replay.yaml"
    assert copied.read_text() == (REPO / "configs" / "demo-replay.yaml").read_text()
    assert str(copied) in capsys.readouterr().out
    make_config(copied)  # a valid run config
    # a sweep file comes with the run config it names, so it runs where it was copied
    assert main(["init", "sweep-demo.yaml", str(tmp_path / "sw")]) == 0
    assert (tmp_path / "sw" / "sweep-demo.yaml").is_file() and (tmp_path / "sw" / "demo.yaml").is_file()
    # an existing file is never overwritten
    assert main(["init", "demo-replay", str(tmp_path)]) == 2
    assert "exists" in capsys.readouterr().err


def test_init_to_a_file_name(tmp_path: Path) -> None:
    from retain.examples import copy_example

    written = copy_example("demo", tmp_path / "mine.yaml")
    assert written == [tmp_path / "mine.yaml"]
    assert make_config(written[0]).name == "demo"


@pytest.mark.parametrize("argv", [["init"], ["init", "no-such-config"]])
def test_init_lists_the_configs_when_the_name_is_missing_or_unknown(argv: list, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main([*argv, str(tmp_path)] if len(argv) == 2 else argv)
    out, err = capsys.readouterr()
    assert status == (0 if len(argv) == 1 else 2)
    listing = out + err
    for name in ("demo", "demo-replay", "seekr-demo", "sweep-demo"):
        assert f"  {name}" in listing
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_the_wheel_holds_the_example_configs(tmp_path: Path) -> None:
    """The configs reach the wheel through the package's configs link (a packaging check, ~20 s)."""
    import subprocess
    import sys
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO), "-w", str(tmp_path)],
                   check=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("retain-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (REPO / "configs").glob("*.yaml"):
        assert f"retain/configs/{path.name}" in names


def test_the_python_entry_points(tmp_path: Path) -> None:
    """retain.dry_run and retain.init do what the commands do."""
    from tests.conftest import tiny_config

    text = retain.dry_run(tiny_config(tmp_path), ["num_train_epochs=2"])
    assert "epochs: 2.0" in text and "not created: dry run" in text
    assert retain.init("demo", tmp_path / "x") == [tmp_path / "x" / "demo.yaml"]


def test_list_shows_the_aliases_and_set_needs_key_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--config"]) == 0
    assert "learning_rate -> train.lr" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["run", "x.yaml", "--set", "novalue"])
    assert info.value.code == 2 and "--set novalue: expected KEY=VALUE" in capsys.readouterr().err
