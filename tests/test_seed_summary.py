"""benchmarks/seed_summary.py: the mean and spread over seeds that the SEEKR page quotes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import seed_summary


def write_result(folder: Path, name: str, seed: int, aps: dict[str, float]) -> None:
    runs = [
        {
            "spec": spec,
            "metrics": {"ap": {"value": ap}, "bwt": {"value": -ap / 10}, "forgetting": {"value": ap / 10}},
            "matrix": {"task_names": ["a", "b"], "rows": [[0.0, 0.0], [ap - 1, ap + 1]]},
        }
        for spec, ap in aps.items()
    ]
    (folder / f"{name}.json").write_text(json.dumps({"settings": {"seed": seed}, "runs": runs}))


def test_means_and_sample_std_over_seeds_count_a_repeated_seed_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seed_summary, "RESULTS", tmp_path)
    write_result(tmp_path, "s42", 42, {"replay": 40.0, "seekr": 50.0})
    write_result(tmp_path, "s42_again", 42, {"seekr": 99.0})  # same spec and seed: the first one counts
    write_result(tmp_path, "s1", 1, {"replay": 44.0, "seekr": 52.0})
    by_spec, tasks = seed_summary.collect(["s42", "s42_again", "s1"])
    row = seed_summary.summarise(by_spec["seekr"], tasks)
    assert row["seeds"] == [1, 42] and row["ap_per_seed"] == [52.0, 50.0]
    assert row["ap"]["mean"] == pytest.approx(51.0)
    assert row["ap"]["std"] == pytest.approx(2 ** 0.5)  # sample std of 50 and 52
    assert row["final_row"]["b"]["mean"] == pytest.approx(52.0)
    assert seed_summary.cell(row["ap"]) == "51.00 ± 1.41"
    one_seed = seed_summary.summarise({42: by_spec["replay"][42]}, tasks)
    assert seed_summary.cell(one_seed["ap"]) == "40.00"


def test_results_of_different_streams_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(seed_summary, "RESULTS", tmp_path)
    write_result(tmp_path, "s42", 42, {"replay": 40.0})
    other = json.loads((tmp_path / "s42.json").read_text())
    other["runs"][0]["matrix"]["task_names"] = ["x", "y"]
    (tmp_path / "other.json").write_text(json.dumps(other))
    with pytest.raises(SystemExit, match="differ"):
        seed_summary.collect(["s42", "other"])
