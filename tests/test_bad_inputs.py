"""A corpus of bad inputs: configs, data files, command lines, damaged run folders, busy folders,
a full disk. Each one must give exit status 2, one message naming the key, file or record, no
traceback, and leave nothing behind (no new folder; a run folder it refused unchanged).

Everything runs in-process through the CLI's ``main`` (the slow part, a tiny run to resume from, is
made once per module), so the whole corpus takes seconds.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import pickle
import resource
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import pytest
import yaml

from retain.cli import main
from retain.engine import checkpoint as ckpt
from retain.reporting.guard import LOCK_FILE, MARKER_FILE, RunLock
from tests.conftest import tiny_config

SMALL = {"demo_tasks": 2, "demo_train_size": 8, "demo_eval_size": 4}


def _config(tmp_path: Path, **sections: Any) -> dict[str, Any]:
    config = tiny_config(tmp_path, stream=dict(SMALL))
    for section, values in sections.items():
        if isinstance(values, dict) and isinstance(config.get(section), dict):
            config[section] = {**config[section], **values}
        else:
            config[section] = values
    return config


def _write(tmp_path: Path, config: Any, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(config if isinstance(config, str) else yaml.safe_dump(config))
    return path


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse refuses some command lines itself (also exit 2)
        code = exc.code
    return code, capsys.readouterr().err


def _assert_refused(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    assert fragment in err, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, f"more than one line:\n{err}"


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes (the lock file's pid excluded)."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != LOCK_FILE
    }


# -- 1. configs: every key's range, choices and type ----------------------------------------------

NAN, INF = float("nan"), float("inf")

CONFIG_CASES: list[tuple[str, dict[str, Any], str]] = [
    ("name-dotdot", {"name": ".."}, "name: '..'"),
    ("name-dot", {"name": "."}, "name: '.'"),
    ("name-slash", {"name": "a/b"}, "name: 'a/b'"),
    ("name-escape", {"name": "../escape"}, "name: '../escape'"),
    ("name-dash", {"name": "-rf"}, "name: '-rf'"),
    ("name-empty", {"name": ""}, "name: ''"),
    ("name-space", {"name": "my run!"}, "name: 'my run!'"),
    ("name-hidden", {"name": ".hidden"}, "name: '.hidden'"),
    ("lr-nan", {"train": {"lr": NAN}}, "train.lr: must be a finite number"),
    ("lr-inf", {"train": {"lr": INF}}, "train.lr: must be a finite number"),
    ("epochs-inf", {"train": {"epochs": INF}}, "train.epochs: must be a finite number"),
    ("epochs-nan", {"train": {"epochs": NAN}}, "train.epochs: must be a finite number"),
    ("lr-zero", {"train": {"lr": 0}}, "train.lr: must be > 0"),
    ("lr-negative", {"train": {"lr": -1e-3}}, "train.lr: must be > 0"),
    ("lr-text", {"train": {"lr": "fast"}}, "train.lr: expected a number"),
    ("epochs-bool", {"train": {"epochs": True}}, "train.epochs: expected a number"),
    ("epochs-zero", {"train": {"epochs": 0}}, "train.epochs: must be > 0"),
    ("warmup-negative", {"train": {"warmup_steps": -1}}, "train.warmup_steps: must be >= 0"),
    ("batch-zero", {"train": {"batch_size": 0}}, "train.batch_size: must be >= 1"),
    ("batch-float", {"train": {"batch_size": 2.5}}, "train.batch_size: expected an integer"),
    ("grad-accum-zero", {"train": {"grad_accum": 0}}, "train.grad_accum: must be >= 1"),
    ("weight-decay-negative", {"train": {"weight_decay": -0.1}}, "train.weight_decay: must be >= 0"),
    ("betas-one", {"train": {"betas": [0.9]}}, "train.betas: expected two numbers"),
    ("betas-range", {"train": {"betas": [0.9, 1.5]}}, "train.betas[1]: must be in [0, 1)"),
    ("grad-norm-zero", {"train": {"max_grad_norm": 0}}, "train.max_grad_norm: must be > 0"),
    ("scheduler", {"train": {"scheduler": "warm"}}, "train.scheduler: 'warm' is not one of"),
    ("precision", {"train": {"mixed_precision": "fp8"}}, "train.mixed_precision: 'fp8' is not one of"),
    ("max-new-tokens-zero", {"eval": {"max_new_tokens": 0}}, "eval.max_new_tokens: must be >= 1"),
    ("eval-batch-zero", {"eval": {"batch_size": 0}}, "eval.batch_size: must be >= 1"),
    ("scoring", {"eval": {"scoring": "fast"}}, "eval.scoring: 'fast' is not one of"),
    ("label-space", {"eval": {"label_space": "all"}}, "eval.label_space: 'all' is not one of"),
    ("demo-tasks-zero", {"stream": {"demo_tasks": 0}}, "stream.demo_tasks: must be in [1, 8]"),
    ("demo-tasks-nine", {"stream": {"demo_tasks": 9}}, "stream.demo_tasks: must be in [1, 8], got 9"),
    ("demo-no-train", {"stream": {"demo_train_size": 0}}, "stream.demo_train_size: must be >= 1"),
    ("demo-no-eval", {"stream": {"demo_eval_size": 0}}, "stream.demo_eval_size: must be >= 1"),
    ("max-train-zero", {"stream": {"max_train_per_task": 0}}, "stream.max_train_per_task: must be >= 1"),
    ("source-length-zero", {"stream": {"max_source_length": 0}}, "stream.max_source_length: must be >= 1"),
    ("eval-split", {"stream": {"eval_split": "val"}}, "stream.eval_split: 'val' is not one of"),
    ("order", {"stream": {"order": 7}}, "stream.order: must be in [1, 6]"),
    ("benchmark", {"stream": {"benchmark": "nope"}}, "stream.benchmark: unknown benchmark 'nope'"),
    ("no-data-root", {"stream": {"benchmark": "standard-cl"}}, "stream.data_root: required"),
    ("lora-r-zero", {"model": {"lora": {"r": 0}}}, "model.lora.r: must be >= 1"),
    ("lora-dropout-one", {"model": {"lora": {"dropout": 1.0}}}, "model.lora.dropout: must be in [0, 1)"),
    ("dtype", {"model": {"dtype": "float8"}}, "model.dtype: 'float8' is not one of"),
    ("kind", {"model": {"kind": "encoder"}}, "model.kind: 'encoder' is not one of"),
    ("seed-negative", {"seed": -1}, "seed: must be in [0, 4.29497e+09]"),
    ("unknown-section", {"trian": {}}, "trian: unknown key"),
    ("unknown-key", {"train": {"lrr": 1}}, "train.lrr: unknown key"),
    ("methods-empty", {"methods": []}, "methods: the list is empty"),
    ("methods-entry", {"methods": [{"params": 1}]}, "methods[0]"),
    ("method-unknown", {"methods": ["no-such-method"]}, "unknown method 'no-such-method'"),
    ("method-twice", {"methods": ["seqft", "mtl", "mtl"]}, "twice"),
]


@pytest.mark.parametrize(("patch", "fragment"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES])
def test_bad_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], patch: dict[str, Any], fragment: str) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "sibling.txt").write_text("keep me")
    code, err = _main(["run", str(_write(tmp_path, _config(tmp_path, **patch))), "--quiet", "--overwrite"], capsys)
    _assert_refused(code, err, fragment)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["sibling.txt"], "something was left behind"
    assert (tmp_path / "runs" / "sibling.txt").read_text() == "keep me"


OVERRIDE_CASES = [
    ("override-nan", ["train.lr=nan"], "train.lr: must be a finite number"),
    ("override-inf", ["train.epochs=inf"], "train.epochs: must be a finite number"),
    ("override-name", ["name=.."], "name: '..'"),
    ("override-section", ["train=3"], "train: expected a mapping"),
    ("override-not-section", ["seed.x=1"], "override seed.x: 'seed' is not a section"),
]


@pytest.mark.parametrize(("overrides", "fragment"), [c[1:] for c in OVERRIDE_CASES], ids=[c[0] for c in OVERRIDE_CASES])
def test_bad_override(tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], fragment: str) -> None:
    code, err = _main(["run", str(_write(tmp_path, _config(tmp_path))), "--quiet", *overrides], capsys)
    _assert_refused(code, err, fragment)
    assert not (tmp_path / "runs").exists()


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8)
)

YAML_CASES = [
    ("alias-bomb", BOMB, "YAML aliases"),
    ("many-aliases", "x: &x 1\ny: [" + ", ".join(["*x"] * 200) + "]\n", "more than 100 YAML aliases"),
    ("not-yaml", "train: [unclosed\n", "bad.yaml: not valid YAML"),
    ("top-level-list", "- 1\n- 2\n", "bad.yaml: the top level must be a mapping"),
    ("python-object", "train: !!python/object/apply:os.system ['true']\n", "bad.yaml: not valid YAML"),
]


@pytest.mark.parametrize(("text", "fragment"), [c[1:] for c in YAML_CASES], ids=[c[0] for c in YAML_CASES])
def test_bad_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, fragment: str) -> None:
    code, err = _main(["run", str(_write(tmp_path, text)), "--quiet", "train.lr=1e-3"], capsys)
    _assert_refused(code, err, fragment)
    assert not (tmp_path / "runs").exists()


# -- 2. data files ------------------------------------------------------------------------------


def _custom(tmp_path: Path, records: Any = None, raw: Optional[str] = None, **source: Any) -> dict[str, Any]:
    path = tmp_path / "data.json"
    path.write_text(raw if raw is not None else json.dumps(records))
    task = {"name": "t1", "format": "alpaca", "train": str(path), "eval": str(path), **source}
    return {"benchmark": "custom", "tasks": [task]}


GOOD = [{"instruction": "say", "input": "a", "output": "b"}] * 4

DATA_CASES: list[tuple[str, Callable[[Path], dict[str, Any]], str]] = [
    ("missing-file", lambda p: {"benchmark": "custom", "tasks": [{"name": "t", "train": str(p / "nope.json"), "eval": str(p / "nope.json")}]}, "nope.json"),
    ("malformed-json", lambda p: _custom(p, raw='[{"instruction": "a",'), "data.json"),
    ("missing-output", lambda p: _custom(p, [{"instruction": "a", "input": "b"}]), "missing field 'output'"),
    ("empty-train", lambda p: _custom(p, []), "data.json"),
    ("not-a-list", lambda p: _custom(p, {"instruction": "a"}), "data.json"),
    ("unknown-format", lambda p: _custom(p, GOOD, format="xml"), "stream.tasks[0].format: 'xml' is not one of"),
    ("unknown-metric", lambda p: _custom(p, GOOD, metric="blue"), "stream.tasks[0].metric: 'blue' is not a metric"),
    ("metric-not-importable", lambda p: _custom(p, GOOD, metric="no_such_pkg.metrics:Mine"), "stream.tasks[0].metric: no_such_pkg.metrics:Mine: cannot import module 'no_such_pkg.metrics'"),
    ("metric-not-a-metric", lambda p: _custom(p, GOOD, metric="json:loads"), "stream.tasks[0].metric: json:loads is not a metric"),
    ("template-field-missing", lambda p: _custom(p, GOOD, template="Q: {question}"), "data.json record 0: template field 'question' is not in the record"),
    ("template-broken", lambda p: _custom(p, GOOD, template="Q: {question"), "stream.tasks[0].template: not a valid format string"),
    ("hf-config-missing", lambda p: _custom(p, GOOD, format="hf", hf_config="sst2"), "data.json: a single file has no configs (hf_config: 'sst2')"),
    ("task-not-mapping", lambda p: {"benchmark": "custom", "tasks": [5]}, "stream.tasks[0]: expected a mapping"),
    ("no-tasks", lambda p: {"benchmark": "custom", "tasks": []}, "stream.tasks: benchmark custom needs at least one task"),
    ("duplicate-tasks", lambda p: {**_custom(p, GOOD), "tasks": _custom(p, GOOD)["tasks"] * 2}, "stream.tasks[1]: duplicate task name 't1'"),
    ("data-root-missing", lambda p: {"benchmark": "standard-cl", "data_root": str(p / "none")}, "stream.data_root:"),
]


@pytest.mark.parametrize(("make", "fragment"), [c[1:] for c in DATA_CASES], ids=[c[0] for c in DATA_CASES])
def test_bad_data(tmp_path: Path, capsys: pytest.CaptureFixture[str], make: Callable[[Path], dict[str, Any]], fragment: str) -> None:
    config = _config(tmp_path, stream=make(tmp_path))
    code, err = _main(["run", str(_write(tmp_path, config)), "--quiet"], capsys)
    _assert_refused(code, err, fragment)
    assert not (tmp_path / "runs").exists()


def test_a_task_without_training_examples_is_refused(tmp_path: Path) -> None:
    """A stream whose task ends with no train examples would "complete" having trained nothing."""
    from retain.config import StreamConfig
    from retain.data import benchmarks
    from retain.data.types import Stream, Task
    from retain.errors import DataError

    empty = Stream("custom", [Task("empty", [], [object()], "accuracy", ["a"])])  # type: ignore[list-item]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(benchmarks, "_build_stream", lambda config, seed: empty)
        with pytest.raises(DataError, match="task 'empty': no training examples"):
            benchmarks.build_stream(StreamConfig(), 1)


# -- 3. command lines and run folders ------------------------------------------------------------


def test_no_config(capsys: pytest.CaptureFixture[str]) -> None:
    _assert_refused(*_main(["run", "--quiet"], capsys), "give a CONFIG.yaml")


def test_config_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_refused(*_main(["run", str(tmp_path / "none.yaml")], capsys), "none.yaml: config file not found")


def test_resume_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_refused(*_main(["run", "--resume", str(tmp_path / "none")], capsys), "none: no such run folder")
    (tmp_path / "empty").mkdir()
    _assert_refused(*_main(["run", "--resume", str(tmp_path / "empty")], capsys), "empty: nothing to resume")
    assert list((tmp_path / "empty").iterdir()) == []


def test_resume_with_a_config_file_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _config(tmp_path))
    _assert_refused(*_main(["run", str(path), "--resume", str(tmp_path)], capsys), "takes no config file")


def test_unknown_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main(["run", str(_write(tmp_path, _config(tmp_path))), "--frobnicate"], capsys)
    _assert_refused(code, err, "unrecognized arguments: --frobnicate")


COMMAND_LINE_CASES = [
    ("no-command", [], "the following arguments are required: command"),
    ("unknown-command", ["frob"], "invalid choice: 'frob'"),
    ("export-after-task-text", ["export", "runs/r", "out", "--after-task", "last"], "argument --after-task: invalid int value: 'last'"),
    ("export-no-destination", ["export", "runs/r"], "the following arguments are required: out"),
    ("stop-after-text", ["run", "c.yaml", "--stop-after", "two"], "argument --stop-after: invalid int value: 'two'"),
    ("set-without-value", ["run", "c.yaml", "--set", "train.lr"], "--set train.lr: expected KEY=VALUE"),
    ("allow-import-without-path", ["report", "runs/r", "--allow-import"], "argument --allow-import: expected one argument"),
    ("report-two-folders", ["report", "a", "b"], "unrecognized arguments: b"),
    ("compare-nothing", ["compare"], "the following arguments are required: run_dirs"),
    ("sweep-unknown-option", ["sweep", "s.yaml", "--seeds", "3"], "unrecognized arguments: --seeds 3"),
]


@pytest.mark.parametrize(("argv", "fragment"), [c[1:] for c in COMMAND_LINE_CASES], ids=[c[0] for c in COMMAND_LINE_CASES])
def test_bad_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str], fragment: str) -> None:
    """argparse's own refusals are one line too (no usage block before them), exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    code, err = _main(argv, capsys)
    _assert_refused(code, err, fragment)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_needs_resume_or_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "mine.txt").write_text("x")
    _assert_refused(*_main(["run", str(_write(tmp_path, _config(tmp_path))), "--quiet"], capsys), "run folder exists")
    assert (run_dir / "mine.txt").read_text() == "x"


def test_overwrite_refuses_a_folder_without_the_marker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "runs" / "run"
    run_dir.mkdir(parents=True)
    (run_dir / "thesis.tex").write_text("years of work")
    code, err = _main(["run", str(_write(tmp_path, _config(tmp_path))), "--quiet", "--overwrite"], capsys)
    _assert_refused(code, err, "is not a retain run folder")
    assert (run_dir / "thesis.tex").read_text() == "years of work"


def test_overwrite_refuses_a_symlinked_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / MARKER_FILE).write_text("{}")
    (elsewhere / "data.txt").write_text("keep")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "run").symlink_to(elsewhere)
    code, err = _main(["run", str(_write(tmp_path, _config(tmp_path))), "--quiet", "--overwrite"], capsys)
    _assert_refused(code, err, "symbolic link")
    assert (elsewhere / "data.txt").read_text() == "keep"


def test_demo_never_empties_a_parent_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = tmp_path / "runs"
    (runs / "other-run").mkdir(parents=True)
    (runs / "other-run" / "matrix.json").write_text("{}")
    code, err = _main(["demo", "--quiet", f"output_dir={runs}", "name=.."], capsys)
    _assert_refused(code, err, "name: '..'")
    code, err = _main(["demo", "--quiet", f"output_dir={tmp_path}", "name=runs"], capsys)
    _assert_refused(code, err, "is not a retain run folder")
    assert (runs / "other-run" / "matrix.json").read_text() == "{}"


def test_report_and_compare_of_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _assert_refused(*_main(["report", str(tmp_path / "none")], capsys), "none")
    _assert_refused(*_main(["compare", str(tmp_path / "a"), str(tmp_path / "b")], capsys), "a")


def test_debug_shows_the_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _main(["run", str(_write(tmp_path, _config(tmp_path, train={"lr": NAN}))), "--debug"], capsys)
    assert code == 2 and "Traceback" in err and "train.lr" in err


@pytest.mark.parametrize(
    ("changes", "named"),
    [({"train": {"warmup_steps": -1}}, "train.warmup_steps"), ({"methods": ["migu", "replya"]}, "unknown method 'replya'")],
)
def test_a_config_error_never_imports_torch(tmp_path: Path, changes: dict[str, Any], named: str) -> None:
    """Config, method names and data are checked before torch is imported: a typo is reported at once.

    ``main()`` reads the process's own command line, as the ``retain`` script does: that is the
    path whose exit also ends a process group, which must not import torch to find there is none.
    """
    path = _write(tmp_path, _config(tmp_path, **changes))
    code = (
        "import sys; sys.argv = ['retain', 'run', sys.argv[1]]; from retain.cli import main; rc = main(); "
        "assert 'torch' not in sys.modules, 'torch was imported'; sys.exit(rc)"
    )
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert named in done.stderr and "Traceback" not in done.stderr


def test_the_validation_path_imports_no_torch() -> None:
    """The modules a refused config goes through (CLI, config, preflight, sweep spec) import no torch."""
    code = (
        "import sys; import retain.cli, retain.config, retain.engine.preflight, retain.sweeps.spec; "
        "from retain.cli import build_parser; build_parser(); "
        "loaded = sorted(m for m in ('torch', 'transformers', 'accelerate', 'datasets') if m in sys.modules); "
        "assert not loaded, loaded"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


# -- 4. a run folder to resume: damaged, edited, locked, busy ------------------------------------


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny run stopped after its first task, with a carried optimizer (all checkpoint files)."""
    import retain

    tmp = tmp_path_factory.mktemp("stopped")
    config = _config(tmp, train={"reset_optimizer_per_task": False})
    result = retain.run(config, quiet=True, stop_after=1)
    files = json.loads((result.run_dir / "checkpoint" / "state.json").read_text())["files"]
    assert {"model.safetensors", "methods.json", "optimizer.safetensors"} <= set(files)
    return result.run_dir


@pytest.fixture
def run_copy(stopped_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / "run"
    shutil.copytree(stopped_run, target)
    return target


def _flip_byte(path: Path, offset: int = -1) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_state(path: Path) -> None:
    state = json.loads(path.read_text())
    state["completed_phases"] += 1
    path.write_text(json.dumps(state, indent=2))


CKPT = "checkpoint"
DAMAGE: list[tuple[str, Callable[[Path], None], str]] = [
    ("model-bit-flip", lambda d: _flip_byte(d / CKPT / "model.safetensors"), "model.safetensors: checksum mismatch"),
    ("model-truncated", lambda d: (d / CKPT / "model.safetensors").write_bytes((d / CKPT / "model.safetensors").read_bytes()[:1000]), "model.safetensors: checksum mismatch"),
    ("model-missing", lambda d: (d / CKPT / "model.safetensors").unlink(), "model.safetensors: missing"),
    ("methods-json-edited", lambda d: (d / CKPT / "methods.json").write_text("[{\"step\": 1}]"), "methods.json: checksum mismatch"),
    ("methods-tensors-missing", lambda d: (d / CKPT / "methods.safetensors").unlink(), "methods.safetensors: missing"),
    ("optimizer-bit-flip", lambda d: _flip_byte(d / CKPT / "optimizer.safetensors", 200), "optimizer.safetensors: checksum mismatch"),
    ("optimizer-json-missing", lambda d: (d / CKPT / "optimizer.json").unlink(), "optimizer.json: missing"),
    ("state-skips-a-task", lambda d: _edit_state(d / CKPT / "state.json"), "state.json: checksum mismatch"),
    ("state-not-json", lambda d: (d / CKPT / "state.json").write_text("{"), "state.json: damaged"),
    ("config-unreadable", lambda d: (d / "config.yaml").write_text("train: [\n"), "config.yaml: not valid YAML"),
]


@pytest.mark.parametrize(("damage", "fragment"), [c[1:] for c in DAMAGE], ids=[c[0] for c in DAMAGE])
def test_damaged_checkpoint(run_copy: Path, capsys: pytest.CaptureFixture[str], damage: Callable[[Path], None], fragment: str) -> None:
    damage(run_copy)
    before = _snapshot(run_copy)
    _assert_refused(*_main(["run", "--resume", str(run_copy), "--quiet"], capsys), fragment)
    assert _snapshot(run_copy) == before, "a refused resume changed the run folder"


RESULT_SHAPING = [
    ("lr", ["train.lr=0.5"], "train.lr (0.003 -> 0.5)"),
    ("stream", ["stream.demo_tasks=3"], "stream.demo_tasks (2 -> 3)"),
    ("model", ["model.name_or_path=builtin:tiny-gpt2"], "model.name_or_path"),
    ("methods", ["methods=[ewc]"], "methods (['seqft'] -> ['ewc'])"),
    ("two-keys", ["train.epochs=2", "seed=1"], "seed (7 -> 1), train.epochs (1.0 -> 2.0)"),
]


@pytest.mark.parametrize(("overrides", "fragment"), [c[1:] for c in RESULT_SHAPING], ids=[c[0] for c in RESULT_SHAPING])
def test_resume_refuses_results_shaping_overrides(run_copy: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], fragment: str) -> None:
    before = _snapshot(run_copy)
    code, err = _main(["run", "--resume", str(run_copy), "--quiet", *overrides], capsys)
    _assert_refused(code, err, fragment)
    assert _snapshot(run_copy) == before


def test_resume_holds_the_lock_and_records_a_harmless_override(run_copy: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from retain.engine import runner
    from retain.errors import RetainError

    seen: list[str] = []
    real = runner.train_phase

    def train_and_probe(*args: Any, **kwargs: Any) -> Any:
        try:
            RunLock(run_copy).acquire().release()
        except RetainError as err:
            seen.append(str(err))
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "train_phase", train_and_probe)
    assert _main(["run", "--resume", str(run_copy), "--quiet", "eval.batch_size=3"], capsys)[0] == 0
    assert seen and f"pid {os.getpid()}" in seen[0], "the run folder was not locked during the run"
    RunLock(run_copy).acquire().release()  # released at the end
    assert yaml.safe_load((run_copy / "config.yaml").read_text())["eval"]["batch_size"] == 3
    assert "resume: eval.batch_size changed from 16 to 3" in (run_copy / "run.log").read_text()


def _payload(flag: Path) -> bytes:
    """A pickle that writes ``flag`` when it is unpickled."""

    class Payload:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (exec, (f"open({str(flag)!r}, 'w').write('pwned')",))

    return pickle.dumps(Payload())


def test_planted_pickle_in_an_old_format_checkpoint_never_runs(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flag = tmp_path / "pwned"
    state_path = run_copy / CKPT / "state.json"
    state = json.loads(state_path.read_text())
    for key in ("format", "files", "sha256"):
        state.pop(key)
    state_path.write_text(json.dumps(state))
    for name in ("methods.pt", "optimizer.pt"):
        (run_copy / CKPT / name).write_bytes(_payload(flag))
    before = _snapshot(run_copy)
    _assert_refused(*_main(["run", "--resume", str(run_copy), "--quiet"], capsys), "never loaded")
    assert not flag.exists(), "the planted pickle ran"
    assert _snapshot(run_copy) == before


def test_stale_temps_go_and_a_planted_pickle_beside_a_good_checkpoint_is_ignored(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flag = tmp_path / "pwned"
    for name in ("methods.pt", "optimizer.pt", "model.pt"):
        (run_copy / CKPT / name).write_bytes(_payload(flag))
    for name in (".checkpoint.tmp-abc", ".checkpoint.old-def"):
        (run_copy / name).mkdir()
        (run_copy / name / "model.safetensors").write_bytes(b"x" * 100)
    (run_copy / ".matrix.json.x1y2.tmp").write_text("{")
    assert _main(["run", "--resume", str(run_copy), "--quiet"], capsys)[0] == 0
    assert not flag.exists(), "the planted pickle ran"
    assert len(json.loads((run_copy / "matrix.json").read_text())["rows"]) == 3
    assert _no_temps(run_copy)
    assert "removed 3 leftovers" in (run_copy / "run.log").read_text()


def test_no_pickle_loading_left_in_the_source() -> None:
    source = Path(__file__).resolve().parents[1] / "src" / "retain"
    for path in source.rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        assert "pickle.load" not in text, path
        for line in text.splitlines():
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line.strip()}"


def test_a_locked_folder_names_the_holder(run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _snapshot(run_copy)
    with RunLock(run_copy):
        code, err = _main(["run", "--resume", str(run_copy), "--quiet"], capsys)
        _assert_refused(code, err, f"in use by another retain process (pid {os.getpid()})")
        config = _write(tmp_path, _config(tmp_path))
        code, err = _main(["run", str(config), "--quiet", "--overwrite"], capsys)
        _assert_refused(code, err, f"pid {os.getpid()}")
    assert _snapshot(run_copy) == before, "a refused run touched a locked folder"


@contextlib.contextmanager
def _file_size_limit(nbytes: int) -> Iterator[None]:
    """Writes past ``nbytes`` fail with EFBIG, as on a full disk (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def _no_temps(run_dir: Path) -> bool:
    return not [p for p in run_dir.rglob(".*") if p.name.startswith(".checkpoint.") or p.name.endswith(".tmp")]


def test_disk_full_on_a_new_run_leaves_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path, _config(tmp_path))
    with _file_size_limit(100_000):
        code, err = _main(["run", str(path), "--quiet"], capsys)
    _assert_refused(code, err, "model.safetensors: the file size limit was reached")
    assert not (tmp_path / "runs" / "run").exists()


def test_disk_full_while_resuming_keeps_the_last_checkpoint(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _file_size_limit(100_000):
        code, err = _main(["run", "--resume", str(run_copy), "--quiet"], capsys)
    _assert_refused(code, err, f"continue with: retain run --resume {run_copy}")
    assert ckpt.verify_checkpoint(run_copy / CKPT)["completed_phases"] == 1
    assert _no_temps(run_copy)
    assert _main(["run", "--resume", str(run_copy), "--quiet"], capsys)[0] == 0


@contextlib.contextmanager
def _read_only_folder(path: Path) -> Iterator[Path]:
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        try:
            yield path
        finally:
            path.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("running as root and cannot mount a read-only tmpfs")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def test_read_only_output_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with _read_only_folder(tmp_path / "ro") as folder:
        config = _config(tmp_path, output_dir=str(folder))
        code, err = _main(["run", str(_write(tmp_path, config)), "--quiet"], capsys)
        _assert_refused(code, err, str(folder / "run"))
        assert "read-only" in err or "permission denied" in err
        assert list(folder.iterdir()) == []


# -- 5. leftovers and dead ends ---------------------------------------------------------------


def test_a_crash_mid_swap_is_recovered(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Killed between renaming the old checkpoint aside and the new one in: no checkpoint/."""
    (run_copy / CKPT).rename(run_copy / ".checkpoint.old-0123456789ab")
    assert _main(["run", "--resume", str(run_copy), "--quiet"], capsys)[0] == 0
    log = (run_copy / "run.log").read_text()
    assert "recovered the checkpoint after 1 phases" in log and "after 1 of 2 phases" in log
    assert _no_temps(run_copy)


def test_resume_without_a_checkpoint_says_so(run_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (run_copy / CKPT / "state.json").unlink()
    code, err = _main(["run", "--resume", str(run_copy)], capsys)
    assert code == 0
    assert "no checkpoint/state.json" in err and "starts again from the first task" in err
    assert "no checkpoint/state.json" in (run_copy / "run.log").read_text()


@pytest.mark.parametrize("signum", [None, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupt_during_start_up_leaves_no_dead_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, signum: Optional[int]) -> None:
    from retain.engine import runner

    def interrupt(*args: Any, **kwargs: Any) -> Any:
        if signum is None:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)

    monkeypatch.setattr(runner, "load_model", interrupt)
    code, err = _main(["run", str(_write(tmp_path, _config(tmp_path))), "--quiet"], capsys)
    assert code == 130
    assert "nothing was kept" in err and "RUN_DIR" not in err
    assert not (tmp_path / "runs" / "run").exists()


def test_interrupt_after_a_checkpoint_names_the_real_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from retain.engine import runner

    def interrupt(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(runner, "train_phase", interrupt)
        code, err = _main(["run", str(_write(tmp_path, _config(tmp_path))), "--quiet"], capsys)
    run_dir = tmp_path / "runs" / "run"
    assert code == 130
    assert f"continue with: retain run --resume {run_dir}" in err
    assert _main(["run", "--resume", str(run_dir), "--quiet"], capsys)[0] == 0


def test_non_ascii_task_names_get_their_own_predictions_file(tmp_path: Path) -> None:
    from retain.reporting.run_folder import RunFolder

    folder = RunFolder(tmp_path)
    paths = {folder.write_predictions(1, name, [{"prediction": name}]) for name in ("日本", "中文", "task")}
    assert len(paths) == 3


def test_state_codec_round_trips_nested_values() -> None:
    import torch

    state = {
        "tensors": [torch.arange(3), torch.zeros(2, 2, dtype=torch.bfloat16), torch.tensor(True)],
        "by_int": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}, 7: None},
        "by_tuple": {(1, "a"): "x"},
        "tuple": (0.9, 0.999),
        "floats": [1.5, INF, -INF],
        "text": "ok",
        "__tensor__": "a key that looks like a tag",
        "empty": torch.empty(0),
    }
    tree, tensors = ckpt.encode_state(copy.deepcopy(state))
    json.dumps(tree)  # JSON-able
    back = ckpt.decode_state(json.loads(json.dumps(tree)), tensors)
    assert back.keys() == state.keys()
    assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(back["tensors"], state["tensors"]))
    assert torch.equal(back["by_int"][0]["exp_avg"], torch.ones(2)) and back["by_int"][7] is None
    assert back["by_tuple"] == {(1, "a"): "x"}
    assert back["tuple"] == (0.9, 0.999) and back["floats"] == [1.5, INF, -INF]
    assert back["__tensor__"] == state["__tensor__"] and back["empty"].numel() == 0
    with pytest.raises(TypeError, match=r"state\.obj: cannot save a object"):
        ckpt.encode_state({"obj": object()})


def test_resume_reads_a_folder_named_before_the_name_rules(run_copy: Path) -> None:
    """Only new folders are held to the name rules: an existing one is continued, never removed."""
    from retain.engine.preflight import read_saved_config

    config = yaml.safe_load((run_copy / "config.yaml").read_text())
    config["name"] = "my old run!"
    (run_copy / "config.yaml").write_text(yaml.safe_dump(config))
    assert read_saved_config(run_copy).run_dir == run_copy


def test_a_rust_io_error_becomes_an_oserror_naming_the_file(tmp_path: Path) -> None:
    """safetensors reports a full disk as text in a generic exception; checkpoints and exports
    both turn it into the OSError the command line reports as one line."""
    from retain.errors import os_errors_named

    with pytest.raises(OSError) as info:
        with os_errors_named(tmp_path / "model.safetensors"):
            raise RuntimeError("I/O error: No space left on device (os error 28)")
    assert info.value.errno == 28 and info.value.filename == str(tmp_path / "model.safetensors")
    with pytest.raises(ValueError):  # anything else is left alone: a bug stays a bug
        with os_errors_named(tmp_path):
            raise ValueError("not an I/O error")
