"""Seed and order aggregation (mean ± std (n)), score families, and compare's grouping, on
hand-written run folders whose numbers are known."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any, Optional

import pytest

from retain.config import make_config
from retain.evaluation.cl_metrics import AccuracyMatrix, compute_cl_metrics
from retain.reporting.aggregate import (
    RunScores,
    combine_orders,
    format_spread,
    learning_accuracy,
    read_run,
    spread,
    summarise_runs,
)
from retain.reporting.compare import compare_runs
from retain.reporting.labels import method_label
from retain.reporting.run_folder import RunFolder
from retain.sweeps import load_spec, plan_runs, run_sweep

TASKS = ["a", "b"]


def matrix(diagonal: tuple[float, float], final: tuple[float, float], finished: bool = True) -> AccuracyMatrix:
    m = AccuracyMatrix(TASKS, [True, True])
    m.add_initial_row([0.0, 0.0])
    m.add_training_row(0, [diagonal[0], 0.0])
    if finished:
        m.add_training_row(1, list(final))
    return m


def write_run(path: Path, config: dict[str, Any], m: AccuracyMatrix, union: Optional[AccuracyMatrix] = None) -> Path:
    folder = RunFolder(path)
    folder.write_config(config)
    folder.write_matrix(m)
    folder.write_metrics(compute_cl_metrics(m))
    if union is not None:
        (path / "matrix_union.json").write_text(json.dumps(union.to_dict()))
    return path


def config(seed: int = 1, methods: Any = ("seqft",), lr: float = 1e-3, tasks: int = 2) -> dict[str, Any]:
    data = make_config({"seed": seed, "methods": list(methods), "train": {"lr": lr},
                        "stream": {"demo_tasks": tasks}}).to_dict()
    data["model"]["kind"] = "causal"
    return data


# -- spreads ---------------------------------------------------------------------------------------


def test_spread_is_mean_and_sample_std_of_the_defined_values() -> None:
    value = spread([50.0, None, 52.0])
    assert (value.mean, value.n) == (51.0, 2) and value.std == pytest.approx(math.sqrt(2))
    assert format_spread(value) == "51.00 ± 1.41 (2)"
    assert format_spread(spread([40.0])) == "40.00 ± — (1)" and spread([40.0]).std is None
    assert format_spread(spread([None])) == "—" and spread([]).n == 0


def test_overall_is_the_mean_of_order_means_with_their_sample_std() -> None:
    def group(aps: list[float]) -> Any:
        return summarise_runs([RunScores(Path(f"r{i}"), {"seed": i}, values={"ap": ap}, curves={"ap_t": [ap + 10, ap]})
                               for i, ap in enumerate(aps)])

    by_order = {1: group([50.0, 52.0, 54.0]), 2: group([40.0]), 3: group([46.0])}
    assert by_order[1].values["ap"].std == pytest.approx(2.0)
    overall = combine_orders(by_order)
    # (52 + 40 + 46) / 3 = 46, not the pooled (50 + 52 + 54 + 40 + 46) / 5 = 48.4
    assert overall.values["ap"].mean == pytest.approx(46.0) and overall.values["ap"].n == 3
    assert overall.values["ap"].std == pytest.approx(statistics.stdev([52.0, 40.0, 46.0]))
    assert [s.mean for s in overall.curves["ap_t"]] == pytest.approx([56.0, 46.0])


def test_learning_accuracy_is_the_mean_of_the_diagonal() -> None:
    assert learning_accuracy(matrix((80.0, 60.0), (50.0, 60.0))) == pytest.approx(70.0)
    multitask = AccuracyMatrix(TASKS, [True, True])
    multitask.add_training_row(1, [70.0, 90.0])  # one phase for both tasks: no a[0][0]
    assert learning_accuracy(multitask) is None


# -- score families --------------------------------------------------------------------------------


def test_a_family_comes_from_its_matrix_file_or_from_a_metrics_block(tmp_path: Path) -> None:
    run = write_run(tmp_path / "r", config(), matrix((80.0, 60.0), (50.0, 60.0)), union=matrix((40.0, 30.0), (20.0, 30.0)))
    scores = read_run(run)
    assert scores.families() == ["", "union"]
    assert scores.values["ap"] == pytest.approx(55.0) and scores.values["union.ap"] == pytest.approx(25.0)
    assert scores.values["union.la"] == pytest.approx(35.0) and scores.curves["union.ap_t"] == pytest.approx([40.0, 25.0])
    (run / "matrix_union.json").unlink()
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["union"] = {"ap": {"value": 33.0, "definition": "AP in the union label space"}}
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert read_run(run).values["union.ap"] == 33.0 and "union.bwt" not in read_run(run).values


def test_compare_shows_a_table_per_family(tmp_path: Path) -> None:
    runs = [write_run(tmp_path / f"s{seed}", config(seed), matrix((80.0, 60.0), (50.0 + seed, 60.0)),
                      union=matrix((40.0, 30.0), (20.0 + seed, 30.0))) for seed in (1, 3)]
    out = compare_runs(runs)
    assert "### union label space" in out and "AP (union)" in out
    assert "| seqft | s1, s3 | 1, 3 | 56.00 ± 0.71 (2) |" in out  # AP: (51+60)/2, (53+60)/2
    assert "| seqft | s1, s3 | 1, 3 | 26.00 ± 0.71 (2) |" in out  # union AP: (21+30)/2, (23+30)/2


# -- compare: grouping, labels, warnings -----------------------------------------------------------


def test_compare_groups_runs_that_differ_only_by_seed(tmp_path: Path) -> None:
    write_run(tmp_path / "seq1", config(1), matrix((80.0, 60.0), (50.0, 60.0)))
    write_run(tmp_path / "seq2", config(2), matrix((80.0, 60.0), (54.0, 60.0)))
    write_run(tmp_path / "seq2copy", config(2), matrix((80.0, 60.0), (99.0, 60.0)))  # same seed again
    write_run(tmp_path / "fast", config(1, lr=1e-2), matrix((90.0, 70.0), (30.0, 70.0)))
    # replay at its default ratio written out is the same method as plain `replay`
    write_run(tmp_path / "rp1", config(1, [{"name": "replay", "ratio": 0.02}]), matrix((80.0, 60.0), (70.0, 60.0)))
    write_run(tmp_path / "rp2", config(2, ["replay"]), matrix((80.0, 60.0), (72.0, 60.0)))
    write_run(tmp_path / "rp10", config(1, [{"name": "replay", "ratio": 0.1}]), matrix((80.0, 60.0), (75.0, 60.0)))
    out = compare_runs([tmp_path / n for n in ("seq1", "seq2", "seq2copy", "fast", "rp1", "rp2", "rp10")])
    lines = out.splitlines()
    assert any("seq2copy repeats" in line and "counted once" in line for line in lines)
    # seqft, lr 1e-3: AP (50+60)/2 = 55 and (54+60)/2 = 57 -> 56 ± sqrt(2)
    assert "| seqft [train.lr=0.001] | seq1, seq2 | 1, 2 | 56.00 ± 1.41 (2) |" in out
    assert "| seqft [train.lr=0.01] | fast | 1 | 50.00 ± — (1) |" in out
    assert "| replay [train.lr=0.001] | rp1, rp2 | 1, 2 | 65.50 ± 0.71 (2) |" in out
    assert "| replay(ratio=0.1) [train.lr=0.001] | rp10 | 1 |" in out
    assert "different streams" not in out


def test_compare_warns_when_streams_differ(tmp_path: Path) -> None:
    write_run(tmp_path / "two", config(1), matrix((80.0, 60.0), (50.0, 60.0)))
    three = AccuracyMatrix(["a", "b", "c"], [True] * 3)
    for i in range(3):
        three.add_training_row(i, [50.0] * 3)
    write_run(tmp_path / "three", config(1, tasks=3), three)
    out = compare_runs([tmp_path / "two", tmp_path / "three"])
    assert out.startswith("warning: the runs are on different streams")
    assert "two: demo; tasks a, b" in out and "three: demo; tasks a, b, c" in out
    assert "[stream.demo_tasks=2]" in out and "[stream.demo_tasks=3]" in out


def test_method_labels_show_non_default_parameters_only() -> None:
    assert method_label(["migu", {"name": "replay", "ratio": 0.02}]) == "migu + replay"
    assert method_label([{"name": "replay", "ratio": 0.1, "balanced": True}]) == "replay(ratio=0.1, balanced=true)"
    assert method_label([{"name": "not-registered", "x": 1}]) == "not-registered(x=1)"


# -- the sweep's tables over orders ----------------------------------------------------------------


def test_sweep_over_orders_tabulates_each_order_and_the_mean_over_orders(tmp_path: Path) -> None:
    base = {"model": {"kind": "causal"}, "stream": {"benchmark": "standard-cl", "data_root": str(tmp_path)}}
    spec = load_spec({"name": "orders", "output_dir": str(tmp_path), "base": base,
                      "methods": ["seqft"], "orders": [1, 2], "seeds": [1, 2]})
    finals = {(1, 1): 50.0, (1, 2): 54.0, (2, 1): 40.0, (2, 2): 40.0}
    for run in plan_runs(spec):  # finished run folders written by hand: the sweep only reads them
        final = finals[run.order, run.seed]
        write_run(run.run_dir, make_config(run.config).to_dict(), matrix((80.0, 60.0), (final, 60.0)),
                  union=matrix((40.0, 30.0), (final - 30.0, 30.0)))
    result = run_sweep(spec, quiet=True)
    assert set(result.outcome.values()) == {"reused"}
    # order 1: AP 55, 57 -> 56 ± 1.41; order 2: 50, 50 -> 50 ± 0; overall: mean(56, 50) = 53, stdev = 4.24
    text = result.text
    assert text.index("## overall") < text.index("## order 1") < text.index("## order 2")
    assert "## overall, main matrix (matrix.json)" in text and "## order 2, union label space" in text
    assert "| seqft | order 1, order 2 | 53.00 ± 4.24 (2) |" in text
    assert "| seqft | order 1, order 2 | 23.00 ± 4.24 (2) |" in text  # union AP = final / 2: mean(26, 20)
    assert "AP (union)" in text
    assert "| seqft | 1, 2 | 56.00 ± 1.41 (2) |" in text and "| seqft | 1, 2 | 50.00 ± 0.00 (2) |" in text
    csv_lines = (result.folder / "summary.csv").read_text().splitlines()
    assert any(line.startswith(",seqft,overall,ap,53.0,4.24") for line in csv_lines)
    names = {p.name for p in result.folder.iterdir()}
    assert {"ap_t_overall.png", "ap_t_order1.png", "tasks_order1.png", "tasks_order2.png", "ap_t_overall_union.png"} <= names
    rows = json.loads((result.folder / "summary.json").read_text())["rows"]
    assert rows[0]["overall"]["values"]["union.ap"]["mean"] == pytest.approx(23.0)


def test_compare_warns_when_only_the_caps_differ_and_lists_every_method_parameter(tmp_path: Path) -> None:
    capped = config(1)
    capped["stream"]["max_train_per_task"] = 50
    write_run(tmp_path / "full", config(1), matrix((80.0, 60.0), (50.0, 60.0)))
    write_run(tmp_path / "capped", capped, matrix((80.0, 60.0), (50.0, 60.0)))
    out = compare_runs([tmp_path / "full", tmp_path / "capped"])
    assert out.startswith("warning: the runs are on different streams")
    assert "full: demo; tasks a, b; max_train_per_task=null" in out and "capped: demo; tasks a, b; max_train_per_task=50" in out
    # the same caps: no warning; each row's methods are spelled out with their defaults
    write_run(tmp_path / "rp", config(1, [{"name": "replay", "ratio": 0.1}]), matrix((80.0, 60.0), (75.0, 60.0)))
    out = compare_runs([tmp_path / "full", tmp_path / "rp"])
    assert "different streams" not in out
    assert "- seqft: seqft" in out
    line = next(x for x in out.splitlines() if x.startswith("- replay(ratio=0.1): "))
    assert "replay(ratio=0.1, " in line and "balanced=" in line
