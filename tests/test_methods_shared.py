"""One suite for every registered method: a tiny run, save/resume equivalence, and composition.

A new method gets these checks by registering; its own math tests live in its own test file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import retain
from retain.methods.base import OWNS_BATCH_SCHEDULE, Method
from retain.config import MethodSpec
from retain.errors import MethodError
from retain.methods.registry import available_methods, check_combination, instantiate
from tests.conftest import tiny_config

METHODS = available_methods()
REPLAY_FAMILY = {name for name, cls in METHODS.items() if OWNS_BATCH_SCHEDULE in cls.capabilities}


def _config(tmp_path: Path, name: str, methods: list[Any], cls: type[Method]) -> dict[str, Any]:
    model = "builtin:tiny-llama" if "causal" in cls.model_kinds else ("builtin:tiny-t5" if "seq2seq" in cls.model_kinds else "builtin:tiny-bert")
    config = tiny_config(
        tmp_path, name=name, model=model, methods=methods,
        stream={"demo_tasks": 3, "demo_train_size": 24, "demo_eval_size": 8},
        train={"batch_size": 8},
    )
    if cls.needs_lora:
        config["model"]["lora"] = {"enabled": True, "r": 4}
    return config


@pytest.mark.parametrize("name", sorted(METHODS))
def test_tiny_run(tmp_path: Path, name: str) -> None:
    cls = METHODS[name]
    result = retain.run(_config(tmp_path, "run", [name], cls), quiet=True)
    assert result.matrix.rows, "no rows written"
    assert all(value is not None for value in result.matrix.rows[-1])
    assert (result.run_dir / "report.md").is_file()


@pytest.mark.parametrize("name", sorted(METHODS))
def test_resume_matches_uninterrupted(tmp_path: Path, name: str) -> None:
    """Stop after the first task, resume from the folder: the same matrix as one straight run."""
    cls = METHODS[name]
    straight = retain.run(_config(tmp_path, "straight", [name], cls), quiet=True)
    stopped = retain.run(_config(tmp_path, "stopped", [name], cls), quiet=True, stop_after=1)
    assert len(stopped.matrix.rows) < len(straight.matrix.rows) or len(straight.matrix.rows) <= 2
    resumed = retain.run(stopped.run_dir, resume=True, quiet=True)
    assert resumed.matrix.rows == straight.matrix.rows


@pytest.mark.parametrize("name", sorted(set(METHODS) - REPLAY_FAMILY - {"seqft", "seqlora"}))
def test_composes_with_replay(tmp_path: Path, name: str) -> None:
    cls = METHODS[name]
    methods: list[Any] = [name, {"name": "replay", "ratio": 0.25}]
    try:
        check_combination(instantiate([MethodSpec(name), MethodSpec("replay")]), next(iter(cls.model_kinds)), bool(cls.needs_lora))
    except MethodError as refused:
        pytest.skip(f"{name} cannot be combined with replay: {refused}")
    result = retain.run(_config(tmp_path, "composed", methods, cls), quiet=True)
    assert "replay buffer" in (result.run_dir / "run.log").read_text()


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("seekr", {"w_ld": 2}, r"seekr\.w_ld: must be in \[0, 1\], got 2"),
        ("seekr", {"selection": "best"}, r"seekr\.selection: 'best' is not one of importance, sensitivity"),
        ("der", {"alpha": -1}, r"der\.alpha: must be >= 0, got -1"),
        ("der", {"ratio": 0}, r"der\.ratio: must be in \(0, 1\], got 0"),
        ("replay", {"count": 0}, r"replay\.count: must be >= 1, got 0"),
        ("ewc", {"gamma": 1.5}, r"ewc\.gamma: must be in \[0, 1\], got 1\.5"),
        ("lwf", {"temperature": 0}, r"lwf\.temperature: must be > 0, got 0"),
        ("olora", {"lambda1": -0.5}, r"olora\.lambda1: must be >= 0, got -0\.5"),
        ("migu", {"threshold": 1.5}, r"migu\.threshold: must be in \[0, 1\], got 1\.5"),
        ("migu", {"statistic": "median"}, r"migu\.statistic: 'median' is not one of l1_mean, raw_sum"),
    ],
)
def test_declared_parameter_checks_name_the_key(name: str, params: dict[str, Any], message: str) -> None:
    """Ranges and choices are declared with each option; the message names method and key."""
    from retain.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        instantiate([MethodSpec(name, params)])
    with pytest.raises(ConfigError, match="^" + message):  # built in Python: the method's own name leads
        METHODS[name](METHODS[name].params_class(**params))


def test_method_names_read_from_source_are_the_registered_ones() -> None:
    """The pre-torch name check (retain.methods.names) must know exactly the shipped methods."""
    from retain.methods.names import shipped_method_names

    assert shipped_method_names() == set(available_methods())
