"""`retain sweep`: the grid, its reuse and resume, and the seed table checked against the runs."""

from __future__ import annotations

import copy
import csv
import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import retain
from retain.cli import main
from retain.config import make_config
from retain.errors import ConfigError, RetainError
from retain.evaluation.cl_metrics import AccuracyMatrix
from retain.reporting.run_folder import RunFolder
from retain.sweeps import load_spec, plan_runs, run_sweep
from retain.sweeps.execute import SweepRunError, eta_text, execute_runs, sweep_logger
from retain.sweeps.plan import run_name
from tests.conftest import tiny_config

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SEEDS = [1, 2]


def base_config(root: Path) -> dict[str, Any]:
    """A tiny classifier run: 2 demo tasks, 8 train / 8 eval examples (about a second per run)."""
    config = tiny_config(root, model="builtin:tiny-bert", stream={"demo_train_size": 8, "demo_eval_size": 8})
    for key in ("name", "output_dir", "methods"):
        config.pop(key)
    return config


def sweep_spec(root: Path, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "grid",
        "output_dir": str(root / "sweeps"),
        "base": base_config(root),
        "methods": ["seqft", {"label": "ewc strong", "methods": [{"name": "ewc", "lam": 1000.0}]}],
        "seeds": SEEDS,
    }
    spec.update(changes)
    return spec


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One 2 methods x 2 seeds sweep, run once for the module."""
    root = tmp_path_factory.mktemp("sweep")
    path = root / "grid.yaml"
    path.write_text(yaml.safe_dump(sweep_spec(root)))
    result = run_sweep(path, quiet=True)
    return {"root": root, "path": path, "result": result}


def saved_value(run_dir: Path, key: str) -> float:
    return json.loads((run_dir / "metrics.json").read_text())[key]["value"]


def hand_mean_std(a: float, b: float) -> tuple[float, float]:
    """Mean and sample std (ddof=1) of two numbers: |a - b| / sqrt(2)."""
    return (a + b) / 2, abs(a - b) / math.sqrt(2)


def diagonal_mean(run_dir: Path) -> float:
    matrix = AccuracyMatrix.from_dict(json.loads((run_dir / "matrix.json").read_text()))
    return sum(matrix.row_after_task(i)[i] for i in range(matrix.num_tasks)) / matrix.num_tasks


# -- the grid and its table ---------------------------------------------------------------------


def test_plan_names_runs_from_labels_and_sets_seed_and_methods(tmp_path: Path) -> None:
    runs = plan_runs(load_spec(sweep_spec(tmp_path)))
    assert [r.name for r in runs] == ["seqft-s1", "seqft-s2", "ewc_strong-s1", "ewc_strong-s2"]
    assert runs[2].config["methods"] == [{"name": "ewc", "lam": 1000.0}] and runs[2].config["seed"] == 1
    assert runs[0].run_dir == tmp_path / "sweeps" / "grid" / "runs" / "seqft-s1"
    settings = [{"label": "lr/high", "overrides": {"train.lr": 0.01}}, {"label": "low", "overrides": ["train.lr=1e-4"]}]
    spec = sweep_spec(tmp_path, orders=[1, 2], seeds=[3], methods=[["seqft"]], settings=settings)
    spec["base"]["stream"] = {"benchmark": "standard-cl", "data_root": str(tmp_path)}
    runs = plan_runs(load_spec(spec))
    assert [r.name for r in runs] == ["lr_high-seqft-o1-s3", "lr_high-seqft-o2-s3", "low-seqft-o1-s3", "low-seqft-o2-s3"]
    assert run_name("", "migu + replay(ratio=0.02)", None, 1) == "migu+replay_ratio=0.02-s1"
    long_name = run_name("", "x" * 100, 1, 1)
    assert len(long_name) < 80 and long_name != run_name("", "x" * 99, 1, 1)
    assert make_config(runs[0].config).train.lr == 0.01 and make_config(runs[3].config).train.lr == 1e-4
    assert runs[1].config["stream"]["order"] == 2


def test_seeds_can_differ_per_order(tmp_path: Path) -> None:
    spec = sweep_spec(tmp_path, orders=[1, 2], seeds={1: [42, 1], 2: [42]}, methods=["seqft"])
    spec["base"]["stream"] = {"benchmark": "standard-cl", "data_root": str(tmp_path)}
    loaded = load_spec(spec)
    assert [r.name for r in plan_runs(loaded)] == ["seqft-o1-s42", "seqft-o1-s1", "seqft-o2-s42"]
    assert loaded.seeds == [42, 1] and loaded.to_dict()["seeds"] == {1: [42, 1], 2: [42]}
    for seeds, fragment in (({1: [42]}, "exactly the sweep's orders"), ({1: [], 2: [1]}, "seeds.1: expected a non-empty"),
                            ({1: [3, 3], 2: [1]}, "seeds.1: [3, 3] lists a value twice"), (["x"], "seeds: expected a list")):
        with pytest.raises(ConfigError, match=re.escape(fragment)):
            load_spec({**spec, "seeds": seeds})


def test_a_methods_entry_carries_its_own_overrides_after_the_settings(tmp_path: Path) -> None:
    methods = ["seqft", {"label": "fast", "methods": ["seqft"], "overrides": {"train.lr": 0.02}}]
    settings = [{"label": "slow", "overrides": {"train.lr": 1e-4}}]
    spec = load_spec(sweep_spec(tmp_path, methods=methods, settings=settings, seeds=[1]))
    runs = plan_runs(spec)
    assert [make_config(r.config).train.lr for r in runs] == [1e-4, 0.02]
    assert spec.to_dict()["methods"][1]["overrides"] == ["train.lr=0.02"]
    assert "overrides" not in spec.to_dict()["methods"][0]


def test_table_is_mean_and_sample_std_of_the_runs_metrics(grid: dict[str, Any]) -> None:
    result = grid["result"]
    runs_dir = result.folder / "runs"
    assert result.outcome == {"seqft-s1": "ran", "seqft-s2": "ran", "ewc_strong-s1": "ran", "ewc_strong-s2": "ran"}
    summary = json.loads((result.folder / "summary.json").read_text())
    rows = {row["method"]: row["orders"]["stream"] for row in summary["rows"]}
    assert set(rows) == {"seqft", "ewc strong"}
    for label, prefix in (("seqft", "seqft"), ("ewc strong", "ewc_strong")):
        values = rows[label]["values"]
        assert rows[label]["seeds"] == SEEDS
        for key in ("ap", "bwt", "forgetting"):
            mean, std = hand_mean_std(*(saved_value(runs_dir / f"{prefix}-s{s}", key) for s in SEEDS))
            assert values[key]["mean"] == pytest.approx(mean) and values[key]["n"] == 2
            assert values[key]["std"] == pytest.approx(std)
            # each run's own value too, in seed order (what paired comparisons read)
            per_run = [saved_value(runs_dir / f"{prefix}-s{s}", key) for s in SEEDS]
            assert rows[label]["per_run"][key] == pytest.approx(per_run)
        la_mean, la_std = hand_mean_std(*(diagonal_mean(runs_dir / f"{prefix}-s{s}") for s in SEEDS))
        assert values["la"]["mean"] == pytest.approx(la_mean) and values["la"]["std"] == pytest.approx(la_std)
    # the same numbers in the printed Markdown table, the CSV and the plots
    ap = rows["seqft"]["values"]["ap"]
    assert f"| seqft | 1, 2 | {ap['mean']:.2f} ± {ap['std']:.2f} (2) |" in result.text
    assert (result.folder / "summary.md").read_text() == result.text
    with open(result.folder / "summary.csv", newline="") as handle:
        lines = [r for r in csv.DictReader(handle) if r["method"] == "seqft" and r["metric"] == "ap"]
    assert len(lines) == 1 and float(lines[0]["mean"]) == pytest.approx(ap["mean"]) and lines[0]["n"] == "2"
    for plot in ("ap_t_stream.png", "tasks_stream.png"):
        assert (result.folder / plot).read_bytes()[:8] == PNG_MAGIC
    assert "sweep.log" in {p.name for p in result.folder.iterdir()}


def test_second_invocation_reuses_every_finished_run(grid: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    runs_dir = grid["result"].folder / "runs"
    stamps = {p: p.stat().st_mtime_ns for p in runs_dir.glob("*/metrics.json")}
    assert main(["sweep", str(grid["path"]), "--quiet"]) == 0
    assert "| seqft | 1, 2 |" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in runs_dir.glob("*/metrics.json")} == stamps
    log = (grid["result"].folder / "sweep.log").read_text().splitlines()
    last = log[log.index(next(line for line in reversed(log) if "finished earlier" in line and "to run" in line)):]
    assert "4 finished earlier, 0 to run" in last[0]
    assert sum("reused" in line for line in last) == 4 and not any("running" in line for line in last)
    # --dry-run reports the same and runs nothing
    assert main(["sweep", str(grid["path"]), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("| finished (2/2 tasks) |") == 4


def test_interrupted_run_is_resumed_to_the_same_matrix(grid: dict[str, Any], tmp_path: Path) -> None:
    spec = sweep_spec(tmp_path, methods=["seqft"], seeds=[1])
    (planned,) = plan_runs(load_spec(spec))
    retain.run(planned.config, quiet=True, stop_after=1)  # as if killed after the first task
    assert RunFolder(planned.run_dir).read_matrix().tasks_trained == 1
    assert run_sweep(spec, dry_run=True).outcome == {"seqft-s1": "partial"}
    result = run_sweep(spec, quiet=True)
    assert result.outcome == {"seqft-s1": "resumed"}
    assert "resuming" in (planned.run_dir / "run.log").read_text()
    reference = grid["result"].folder / "runs" / "seqft-s1"
    assert json.loads((planned.run_dir / "matrix.json").read_text()) == json.loads((reference / "matrix.json").read_text())


def test_a_folder_with_another_config_is_an_error_naming_it(grid: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    changed = sweep_spec(grid["root"])
    changed["base"]["train"]["lr"] = 1e-2
    path = grid["root"] / "changed.yaml"
    path.write_text(yaml.safe_dump(changed))
    stamps = {p: p.stat().st_mtime_ns for p in (grid["result"].folder / "runs").glob("*/metrics.json")}
    assert main(["sweep", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "seqft-s1" in err and "train.lr: 0.003 in the folder, 0.01 in the sweep" in err
    assert "Traceback" not in err
    assert {p: p.stat().st_mtime_ns for p in (grid["result"].folder / "runs").glob("*/metrics.json")} == stamps


def test_a_failing_run_stops_the_sweep_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = sweep_spec(tmp_path, methods=["seqft"], seeds=[1])
    spec["base"]["stream"] = {"benchmark": "standard-cl", "data_root": str(tmp_path / "no-data")}  # found at run time
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "error: sweep run seqft-s1 (seqft, seed 1) failed: stream.data_root" in err and "no-data" in err
    assert "Traceback" not in err


def test_runs_finished_before_a_failure_are_kept_and_reused(grid: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    runs = plan_runs(load_spec(grid["path"]))
    broken = copy.deepcopy(runs[0])
    broken.name = broken.config["name"] = "broken-s1"
    broken.config["model"]["name_or_path"] = "builtin:no-such-model"
    folder = grid["result"].folder
    with pytest.raises(SweepRunError, match="sweep run broken-s1 .* failed: model.name_or_path") as info:
        execute_runs([*runs, broken], folder, sweep_logger(folder, quiet=True))
    assert info.value.exit_status == 2 and not broken.run_dir.exists()
    log = (folder / "sweep.log").read_text()
    assert log.count("finished earlier (2/2 tasks), reused") >= 4 and "broken-s1: failed: model.name_or_path" in log
    assert main(["sweep", str(grid["path"]), "--dry-run"]) == 0  # the finished runs are still there
    assert capsys.readouterr().out.count("| finished (2/2 tasks) |") == 4


def test_a_folder_without_config_is_restarted_only_when_it_holds_nothing_but_a_log(tmp_path: Path) -> None:
    spec = sweep_spec(tmp_path, methods=["seqft"], seeds=[1])
    (planned,) = plan_runs(load_spec(spec))
    planned.run_dir.mkdir(parents=True)
    (planned.run_dir / "run.log").write_text("loading the model failed\n")
    assert "| seqft-s1 | seqft, seed 1 | new (restarted) |" in run_sweep(spec, dry_run=True).text
    (planned.run_dir / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="seqft-s1: holds files but no config.yaml"):
        run_sweep(spec, dry_run=True)


def test_ctrl_c_says_how_to_continue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from retain.sweeps import execute

    def interrupted(run: Any, state: str, quiet: bool) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "_run_one", interrupted)
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep_spec(tmp_path, methods=["seqft"], seeds=[1])))
    assert main(["sweep", str(path), "--quiet"]) == 130
    assert f"finished runs are kept, continue with: retain sweep {path}" in capsys.readouterr().err


def test_a_crash_keeps_its_traceback_in_a_file(tmp_path: Path) -> None:
    runs = plan_runs(load_spec(sweep_spec(tmp_path, methods=["seqft"], seeds=[1])))
    folder = tmp_path / "sweeps" / "grid"

    def crash(run: Any, state: str, quiet: bool) -> None:
        raise RuntimeError("out of memory")

    with pytest.raises(SweepRunError, match="seqft-s1.*RuntimeError: out of memory") as info:
        execute_runs(runs, folder, sweep_logger(folder, quiet=True), runner=crash)
    assert info.value.exit_status == 1
    assert "RuntimeError" in (folder / "seqft-s1.traceback.txt").read_text()


# -- the sweep file ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"method": ["seqft"]}, "method: unknown key"),
        ({"methods": []}, "methods: list at least one"),
        ({"methods": ["seqft", ["seqft"]]}, "label 'seqft' is used twice"),
        ({"methods": ["seqft", {"label": "seqft!", "methods": ["ewc"]}]}, "same folder name 'seqft-s1'"),
        ({"methods": [[{"name": "replay", "ratio": 7}]]}, "replay.ratio"),
        ({"methods": [{"methods": ["seqft"], "params": 1}]}, "methods[0]: unknown key 'params'"),
        ({"methods": [{"methods": ["seqft"], "overrides": 3}]}, "methods[0].overrides: expected a mapping"),
        ({"methods": [{"methods": ["seqft"], "overrides": {"train.lr": -1}}]}, "train.lr"),
        ({"seeds": [1, 1]}, "seeds: [1, 1] lists a value twice"),
        ({"settings": [{"overrides": {}}]}, "settings[0]: expected {label"),
        ({"base": "missing.yaml"}, "missing.yaml: config file not found"),
        ({"base": None}, "base: required"),
        ({"base": 5}, "base: expected a config path or a mapping, got 5"),
        ({"overrides": {"train.lr": "fast"}}, "train.lr"),
        ({"orders": [1]}, "orders: stream.benchmark 'demo' has no orders"),
        ({"methods": [["seqft", "seqlora"]]}, "run seqft+seqlora-s1 (seqft + seqlora): methods: seqft trains all weights"),
        ({"orders": [4], "overrides": {"stream.benchmark": "standard-cl"}}, "orders: 4 is not an order of standard-cl"),
    ],
)
def test_sweep_file_mistakes_name_the_key(tmp_path: Path, change: dict[str, Any], fragment: str) -> None:
    spec = sweep_spec(tmp_path, **{"seeds": [1], **change})
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    with pytest.raises(ConfigError) as info:
        plan_runs(load_spec(path))
    assert fragment in str(info.value) and str(path) in str(info.value)
    assert not (tmp_path / "sweeps").exists()


def test_a_sweep_without_base_is_refused_naming_the_file_and_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No base used to run the built-in defaults (a demo stream on a tiny model) and exit 0."""
    spec = sweep_spec(tmp_path, seeds=[1])
    del spec["base"]
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["sweep", str(path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: base: required") and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "sweeps").exists()
    explicit = load_spec({**spec, "base": {}})  # an explicit mapping, even an empty one, is taken as written
    assert explicit.base == {}


def test_a_second_sweep_of_a_locked_folder_stops_naming_the_holder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from retain.reporting.guard import RunLock

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(sweep_spec(tmp_path, methods=["seqft"], seeds=[1])))
    folder = tmp_path / "sweeps" / "grid"
    folder.mkdir(parents=True)
    (folder / "sweep.log").write_text("the first sweep's lines\n")
    with RunLock(folder):  # what a running `retain sweep` holds for its whole life
        assert main(["sweep", str(path), "--quiet"]) == 2
        err = capsys.readouterr().err
    assert f"{folder}: in use by another retain process (pid {os.getpid()})" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "sweep.log"]  # no sweep.yaml, runs/, summary
    assert (folder / "sweep.log").read_text() == "the first sweep's lines\n"


def test_the_sweep_holds_its_folder_lock_while_runs_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from retain.reporting.guard import RunLock
    from retain.sweeps import execute

    seen: list[str] = []

    def probe(run: Any, state: str, quiet: bool) -> None:
        try:
            RunLock(run.run_dir.parents[1]).acquire().release()
        except RetainError as err:
            seen.append(str(err))
        raise ConfigError("stop here")

    monkeypatch.setattr(execute, "_run_one", probe)
    with pytest.raises(SweepRunError, match="stop here"):
        run_sweep(sweep_spec(tmp_path, methods=["seqft"], seeds=[1]), quiet=True)
    assert seen and f"pid {os.getpid()}" in seen[0], "the sweep folder was not locked during its runs"
    RunLock(tmp_path / "sweeps" / "grid").acquire().release()  # and it is released after a failure


def test_base_path_is_read_relative_to_the_sweep_file(tmp_path: Path) -> None:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(yaml.safe_dump(base_config(tmp_path)))
    spec = sweep_spec(tmp_path, base="base.yaml", overrides=["train.epochs=2"], seeds=[5])
    (tmp_path / "configs" / "s.yaml").write_text(yaml.safe_dump(spec))
    (run, *_) = plan_runs(load_spec(tmp_path / "configs" / "s.yaml"))
    assert make_config(run.config).train.epochs == 2 and run.seed == 5


def test_shipped_demo_sweep_plans() -> None:
    spec = load_spec(Path(__file__).resolve().parents[1] / "configs" / "sweep-demo.yaml")
    runs = plan_runs(spec)
    assert len(runs) == len(spec.methods) * len(spec.seeds) >= 4
    assert {r.config["model"]["name_or_path"] for r in runs} == {"builtin:tiny-llama"}


def test_eta_from_finished_runs() -> None:
    assert eta_text([], 3) == "ETA unknown until a run finishes"
    assert eta_text([10.0, 30.0], 3) == "ETA 1m00s for 3 run(s) (mean 20s over 2)"


# -- retain compare on the sweep's runs ----------------------------------------------------------


def test_compare_pools_seeds_like_the_sweep_and_marks_an_unfinished_run(
    grid: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    runs_dir = grid["result"].folder / "runs"
    partial = tmp_path / "partial"
    RunFolder(partial).write_config(json.loads(json.dumps(yaml.safe_load((runs_dir / "seqft-s1" / "config.yaml").read_text()))))
    matrix = AccuracyMatrix.from_dict(json.loads((runs_dir / "seqft-s1" / "matrix.json").read_text()))
    matrix.rows, matrix.row_labels, matrix.phase_task_index = matrix.rows[:2], matrix.row_labels[:2], matrix.phase_task_index[:1]
    RunFolder(partial).write_matrix(matrix)  # stopped after the first of two tasks
    folders = sorted(str(p) for p in runs_dir.iterdir()) + [str(partial)]
    assert main(["compare", *folders]) == 0
    out = capsys.readouterr().out
    summary = json.loads((grid["result"].folder / "summary.json").read_text())
    for row in summary["rows"]:
        ap = row["orders"]["stream"]["values"]["ap"]
        prefix = "seqft" if row["method"] == "seqft" else "ewc(lam=1000)"
        assert f"| {prefix} |" in out and f"| {ap['mean']:.2f} ± {ap['std']:.2f} (2) |" in out
    partial_line = next(line for line in out.splitlines() if "partial (unfinished)" in line)
    assert partial_line.endswith("| 1/2 |") and "(1)*" in partial_line
    assert "unfinished run: values over the tasks trained so far" in out
    assert "warning" not in out


def test_readme_shows_the_shipped_demo_sweep() -> None:
    repo = Path(__file__).resolve().parents[1]
    shipped = (repo / "configs" / "sweep-demo.yaml").read_text()
    readme = (repo / "README.md").read_text()
    block = readme[readme.index("# configs/sweep-demo.yaml\n"):].split("```")[0].split("\n", 1)[1]
    assert block == shipped[shipped.index("name:"):]


def test_a_sweep_file_is_read_with_the_alias_capped_loader(tmp_path: Path) -> None:
    from retain.errors import ConfigError
    from retain.sweeps.spec import load_spec
    from tests.test_bad_inputs import BOMB

    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)
    with pytest.raises(ConfigError, match="YAML aliases"):
        load_spec(path)


def test_a_sweep_resumes_a_run_whose_metric_it_names_by_import_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep file is the user's: its import-path metric is trusted on resume, where a run folder
    alone would be refused (tests/test_run_folder_safety.py)."""
    (tmp_path / "sweep_metric.py").write_text(
        "from retain.evaluation.metrics import Metric\n\n"
        "class Always(Metric):\n    display_name = 'Always'\n\n"
        "    def score(self, prediction, target, source=''):\n        return 1.0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": "say", "input": str(i), "output": "b"} for i in range(8)]))
    base = base_config(tmp_path)
    base["model"] = {"name_or_path": "builtin:tiny-llama"}
    task = {"format": "alpaca", "train": str(data), "eval": str(data), "metric": "sweep_metric:Always"}
    base["stream"] = {"benchmark": "custom", "tasks": [{"name": "t1", **task}, {"name": "t2", **task}]}
    spec = sweep_spec(tmp_path, base=base, methods=["seqft"], seeds=[1])
    (planned,) = plan_runs(load_spec(spec))
    retain.run(planned.config, quiet=True, stop_after=1)
    result = run_sweep(spec, quiet=True)
    assert result.outcome == {"seqft-s1": "resumed"}
