"""Safe method declarations: distributed support is opt-in, model kinds default to every kind,
capabilities derive from parameters in one place, and methods load by import path like metrics
(gated for run folders, a broken module named and confined to the runs that use it).

The user methods live in ``tests/user_methods.py``, outside the package, and are named only by
import path here: adding a method that way edits no other file.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import retain
from retain.cli import main
from retain.config import MethodSpec
from retain.errors import ConfigError, MethodError
from retain.import_paths import import_paths_in
from retain.methods import builtin, registry
from retain.methods.base import DISTRIBUTED_MODES, Method
from retain.methods.registry import available_methods, check_combination, instantiate
from retain.models.kinds import MODEL_KINDS
from tests.conftest import tiny_config

PULL = "tests.user_methods:PullToStart"
SMALL = {"demo_tasks": 2, "demo_train_size": 16, "demo_eval_size": 8}


def _run_config(tmp_path: Path, name: str, methods: list[Any]) -> dict[str, Any]:
    return tiny_config(tmp_path, name=name, methods=methods, stream=dict(SMALL))


# -- distributed support is opt-in ---------------------------------------------------------------


@pytest.mark.parametrize("mode", [m for m in DISTRIBUTED_MODES if m != "no"])
def test_a_method_that_declares_nothing_runs_in_one_process_only(mode: str) -> None:
    (method,) = instantiate([MethodSpec(PULL)])
    check_combination([method], "causal", lora=False)  # one process: fine
    declared = "multi_gpu" if mode == "multi_cpu" else mode
    with pytest.raises(MethodError) as refused:
        check_combination([method], "causal", lora=False, distributed=mode)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"methods: pull does not support distributed mode {mode}: it declares single-process runs only")
    assert f"declare it on the class: distributed = ('no', '{declared}')" in message


def test_a_declared_mode_is_supported_and_the_others_still_refused() -> None:
    (method,) = instantiate([MethodSpec("tests.user_methods:DataParallelPull")])
    check_combination([method], "causal", lora=False, distributed="multi_cpu")  # gloo DDP: multi_gpu covers it
    with pytest.raises(MethodError, match=r"pull-ddp does not support distributed mode fsdp: it declares no, multi_gpu only"):
        check_combination([method], "causal", lora=False, distributed="fsdp")


def test_a_ddp_run_with_an_undeclared_method_is_refused_before_the_model_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import retain.engine.runner as runner

    monkeypatch.setattr(runner, "distributed_mode", lambda accelerator: "multi_cpu")
    monkeypatch.setattr(runner, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(MethodError, match="pull does not support distributed mode multi_cpu"):
        retain.run(_run_config(tmp_path, "ddp", [PULL]), quiet=True)
    assert not (tmp_path / "runs" / "ddp").exists()


def test_every_builtin_declares_its_modes_on_its_own_class() -> None:
    """No built-in inherits the single-process default by accident: each says what it supports."""
    for name, cls in available_methods().items():
        assert "distributed" in vars(cls), f"{name} does not declare its distributed modes"
        assert set(cls.distributed) <= set(DISTRIBUTED_MODES), name


def test_the_ddp_suite_takes_every_method_that_declares_ddp(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.ddp_equivalence import method_scenarios
    from tests.user_methods import DataParallelPull, PullToStart

    available_methods()
    monkeypatch.setattr(registry, "METHODS", dict(registry.METHODS))
    registry.register_method(DataParallelPull)
    registry.register_method(PullToStart)
    monkeypatch.setattr(DataParallelPull, "test_params", {"weight": 0.5})
    scenarios = method_scenarios()
    assert scenarios["pull-ddp"] == [{"name": "pull-ddp", "weight": 0.5}]
    assert "pull" not in scenarios
    assert scenarios["seekr"] == [{"name": "seekr", "ratio": 0.25, "heads": 2, "query_budget": 4}]


# -- model kinds and capabilities ------------------------------------------------------------------


def test_model_kinds_default_to_every_kind() -> None:
    from tests.user_methods import PullToStart

    assert PullToStart.model_kinds == MODEL_KINDS
    for method in ("causal", "seq2seq", "classifier"):
        check_combination([PullToStart()], method, lora=False)


def test_capabilities_derive_from_the_parameters_in_one_place() -> None:
    from retain.methods.common.replay_buffer import REPLAYS_AFTER_TASK

    kif = available_methods()["kif"]
    during = dataclasses.replace(kif.params_class(), replay_during_task=True)
    after = dataclasses.replace(during, replay_during_task=False)
    assert kif.capabilities_for(during) == kif.capabilities
    assert kif.capabilities_for(after) == kif.capabilities | {REPLAYS_AFTER_TASK}
    assert kif(after).capabilities == kif.capabilities_for(after)
    assert kif(during).capabilities == kif.capabilities
    assert REPLAYS_AFTER_TASK not in kif.capabilities  # the class itself is never changed
    assert Method.capabilities_for(None) == frozenset()  # default: the class's, whatever the parameters


# -- methods by import path -----------------------------------------------------------------------


def test_a_method_from_a_test_module_runs_by_import_path(tmp_path: Path) -> None:
    result = retain.run(_run_config(tmp_path, "user", [{"name": PULL, "weight": 0.1}, {"name": "replay", "ratio": 0.25}]), quiet=True)
    assert all(value is not None for value in result.matrix.rows[-1])
    assert "pull+replay" in (result.run_dir / "run.log").read_text()


def test_a_run_folder_imports_a_method_only_when_allowed(tmp_path: Path) -> None:
    stopped = retain.run(_run_config(tmp_path, "stopped", [PULL]), quiet=True, stop_after=1)
    with pytest.raises(ConfigError, match=rf"methods\[0\]: {PULL}: an import path read from the run folder's .*--allow-import {PULL}"):
        retain.run(stopped.run_dir, resume=True, quiet=True)
    resumed = retain.run(stopped.run_dir, resume=True, quiet=True, allow_imports=[PULL])
    assert len(resumed.matrix.rows) == 3
    assert import_paths_in({"methods": [PULL, {"name": "x.y:Z"}, "seqft"]}) == [PULL, "x.y:Z"]


REFUSALS = [
    ("no-module", "no_such_pkg.methods:Mine", "methods[0]: no_such_pkg.methods:Mine: cannot import module 'no_such_pkg.methods' (ModuleNotFoundError"),
    ("no-class", "tests.user_methods:Missing", "methods[0]: tests.user_methods:Missing: module 'tests.user_methods' has no attribute 'Missing'"),
    ("not-a-method", "tests.user_methods:NotAMethod", "methods[0]: tests.user_methods:NotAMethod is not a method: expected a subclass of retain.methods.base.Method"),
    ("not-a-class", "json:loads", "methods[0]: json:loads is not a method"),
    ("no-name", "tests.user_methods:Nameless", "methods[0]: tests.user_methods:Nameless has no name"),
    ("malformed", "tests.user_methods:", "methods[0]: 'tests.user_methods:': an import path is 'package.module:ClassName'"),
]


@pytest.mark.parametrize(("path", "fragment"), [c[1:] for c in REFUSALS], ids=[c[0] for c in REFUSALS])
def test_bad_import_paths_are_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as refused:
        instantiate([MethodSpec(path)])
    assert str(refused.value).startswith(fragment)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_run_config(tmp_path, "bad", ["seqft", path])))
    assert main(["run", str(config), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + fragment.replace("methods[0]", "methods[1]")) and err.count("\n") == 1, err
    assert not (tmp_path / "runs").exists()


def test_a_user_module_that_fails_to_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "broken_methods.py").write_text("raise RuntimeError('half-written module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ConfigError, match=r"methods\[0\]: broken_methods:Mine: cannot import module 'broken_methods' \(RuntimeError: half-written module\)"):
        instantiate([MethodSpec("broken_methods:Mine")])


def test_a_broken_builtin_module_breaks_only_the_runs_that_use_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    available_methods()
    monkeypatch.setattr(registry, "METHODS", {n: c for n, c in registry.METHODS.items() if n != "kif"})
    monkeypatch.setattr(builtin, "FAILED", {})
    monkeypatch.setitem(sys.modules, "retain.methods.kif.method", None)  # its import fails
    with pytest.raises(MethodError, match=r"methods\[0\]: method 'kif' cannot be loaded: module retain.methods.kif.method failed to import \(ModuleNotFoundError: import of retain.methods.kif.method halted"):
        instantiate([MethodSpec("kif")])
    assert "kif" not in available_methods() and "seqft" in available_methods()
    assert list(registry.broken_methods()) == ["retain.methods.kif.method"]
    result = retain.run(_run_config(tmp_path, "others", ["seqft"]), quiet=True)
    assert all(value is not None for value in result.matrix.rows[-1])
