"""The "Adding a method" examples of the README run as written: one class each, no engine edit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import retain
from retain.config import MethodSpec
from retain.errors import MethodError
from retain.methods import registry
from retain.methods.registry import check_combination, instantiate
from tests.conftest import REPO, tiny_config


def _adding_a_method_examples() -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("### Adding a method") : text.index("### Scaling out")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def readme_methods(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Register the README's methods for one test only."""
    registry.available_methods()  # the built-in methods first
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    namespace: dict[str, Any] = {}
    for code in _adding_a_method_examples():
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  (the project's own README)
    return namespace


def test_readme_has_the_plain_and_the_replay_style_example() -> None:
    examples = _adding_a_method_examples()
    assert len(examples) == 2
    assert "ReplayBuffer(" in examples[1] and "class WeightedReplay(Method)" in examples[1]


@pytest.mark.parametrize("name", ["l2prev", "wreplay"])
def test_readme_methods_run_and_resume(tmp_path: Path, readme_methods: dict[str, Any], name: str) -> None:
    config = tiny_config(tmp_path, name="straight", methods=[name], stream={"demo_train_size": 16})
    straight = retain.run(config, quiet=True)
    assert all(v is not None for v in straight.matrix.rows[-1])
    stopped = retain.run(tiny_config(tmp_path, name="stopped", methods=[name], stream={"demo_train_size": 16}),
                         quiet=True, stop_after=1)
    assert retain.run(stopped.run_dir, resume=True, quiet=True).matrix.rows == straight.matrix.rows
    if name == "wreplay":
        assert "replay buffer" in (straight.run_dir / "run.log").read_text()


def test_the_replay_style_example_is_refused_where_replay_is(readme_methods: dict[str, Any]) -> None:
    with pytest.raises(MethodError, match="single and wreplay cannot be combined: wreplay carries knowledge"):
        check_combination(instantiate([MethodSpec("single"), MethodSpec("wreplay")]), "causal", lora=False)
    with pytest.raises(MethodError, match="replay and wreplay both decide how a task's batches are formed"):
        check_combination(instantiate([MethodSpec("replay"), MethodSpec("wreplay")]), "causal", lora=False)
