"""Config validation: every mistake names its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from retain.config import RunConfig, apply_overrides, make_config
from retain.errors import ConfigError


def test_defaults_are_valid() -> None:
    config = make_config({})
    assert isinstance(config, RunConfig)
    assert config.method_specs()[0].name == "seqft"


def test_overrides_parse_yaml_scalars() -> None:
    config = make_config({}, ["train.lr=1e-4", "train.epochs=2", "model.lora.enabled=true", "name=x"])
    assert config.train.lr == pytest.approx(1e-4)
    assert config.train.epochs == 2.0
    assert config.model.lora.enabled is True
    assert config.name == "x"


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({"trian": {}}, "trian: unknown key"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number"),
        ({"train": {"batch_size": 0}}, "train.batch_size: must be >= 1"),
        ({"train": {"scheduler": "warm"}}, "train.scheduler: 'warm' is not one of"),
        ({"model": {"lora": {"rank": 4}}}, "model.lora.rank: unknown key"),
        ({"eval": {"label_space": "all"}}, "eval.label_space"),
        ({"methods": [{"params": 1}]}, "methods[0]"),
        ({"methods": []}, "methods: the list is empty"),
        ({"train": {"betas": [0.9]}}, "train.betas"),
    ],
)
def test_errors_name_the_key(data: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        make_config(data)
    assert fragment in str(info.value)


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        apply_overrides({}, ["train.lr"])


def test_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        make_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        make_config(bad)
    top = tmp_path / "list.yaml"
    top.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        make_config(top)


def test_method_params_mapping() -> None:
    config = make_config({"methods": ["seqft", {"name": "mtl"}]})
    specs = config.method_specs()
    assert [s.name for s in specs] == ["seqft", "mtl"]


def test_declared_ranges_and_choices_are_checked_with_the_key() -> None:
    from dataclasses import dataclass

    from retain.config import build_dataclass, check_options, option

    @dataclass
    class Params:
        fraction: float = option("A share.", 0.5, low=0.0, high=1.0, high_open=True)
        count: int = option("A count.", 1, low=1)
        mode: str = option("A mode.", "a", choices=("a", "b"))

    assert build_dataclass(Params, {"fraction": 0.0, "count": 1, "mode": "b"}) == Params(0.0, 1, "b")
    for data, message in (
        ({"fraction": 1.0}, r"m\.fraction: must be in \[0, 1\), got 1\.0"),
        ({"fraction": float("nan")}, r"m\.fraction: must be a finite number"),
        ({"count": 0}, r"m\.count: must be >= 1, got 0"),
        ({"mode": "c"}, r"m\.mode: 'c' is not one of a, b"),
    ):
        with pytest.raises(ConfigError, match=message):
            build_dataclass(Params, data, "m")
    with pytest.raises(ConfigError, match=r"p\.count: must be >= 1"):
        check_options(Params(count=-2), "p")


def test_warmup_ratio_is_a_share_of_the_task_steps_unless_steps_are_given() -> None:
    from retain.config import TrainConfig
    from retain.engine.optim import warmup_steps

    assert warmup_steps(TrainConfig(warmup_ratio=0.1), 63) == 6  # round(6.3)
    assert warmup_steps(TrainConfig(warmup_ratio=0.1, warmup_steps=4), 63) == 4
    assert warmup_steps(TrainConfig(warmup_ratio=0.0), 63) == 0
    default = TrainConfig()  # the documented default: a 10% warm-up, then linear decay
    assert (default.scheduler, warmup_steps(default, 63)) == ("linear", 6)
    with pytest.raises(ConfigError, match=r"train.warmup_ratio: must be in \[0, 1\)"):
        make_config({"train": {"warmup_ratio": 1.5}})


def test_train_label_space_is_checked_and_defaults_to_eval() -> None:
    from retain.config import make_config

    assert make_config({"methods": ["seqft"]}).train.label_space is None
    with pytest.raises(ConfigError, match=r"train\.label_space: 'some' is not one of task, union"):
        make_config({"methods": ["seqft"], "train": {"label_space": "some"}})
