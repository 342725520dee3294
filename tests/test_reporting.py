"""Run folder files, atomic writes, the report and the comparison table."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from retain.errors import RetainError
from retain.evaluation.cl_metrics import AccuracyMatrix, GeneralScores
from retain.reporting.atomic import atomic_dir, write_bytes_atomic, write_json_atomic, write_text_atomic
from retain.reporting.compare import compare_runs
from retain.methods.kif.report import plot_unit_heatmap
from retain.reporting.report import format_matrix_text, render_report
from retain.reporting.run_folder import NoWrites, RunFolder

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def make_matrix(final_row: bool = True) -> AccuracyMatrix:
    matrix = AccuracyMatrix(["dbpedia", "amazon", "wiki"], [True, True, False])
    matrix.add_initial_row([10.0, 20.0, 300.0])
    matrix.add_training_row(0, [80.0, 25.0, 250.0])
    matrix.add_training_row(1, [70.0, 90.0, None])
    if final_row:
        matrix.add_training_row(2, [60.0, 85.0, 20.5])
    return matrix


def make_run(path: Path, methods: list, final_row: bool = True) -> RunFolder:
    folder = RunFolder(path)
    folder.write_config({"name": path.name, "model": {"name_or_path": "tiny-gpt2"}, "methods": methods,
                         "stream": {"benchmark": "demo"}, "eval": {"scoring": "rank", "label_space": "task"}})
    folder.write_matrix(make_matrix(final_row))
    return folder


def no_temp_files(directory: Path) -> bool:
    return not [p for p in directory.iterdir() if p.name.startswith(".")]


# -- atomic writes ---------------------------------------------------------------------------


def test_atomic_writes_replace_content_and_leave_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    write_text_atomic(target, "old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    write_json_atomic(tmp_path / "x.json", {"a": [1, None]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, None]}
    write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\x01"
    assert no_temp_files(tmp_path) and no_temp_files(tmp_path / "sub")
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_failed_json_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "m.json"
    write_json_atomic(target, {"ok": 1})
    with pytest.raises(TypeError):
        write_json_atomic(target, {"bad": object()})
    assert json.loads(target.read_text()) == {"ok": 1}
    assert no_temp_files(tmp_path)


def test_atomic_dir_replaces_an_existing_folder(tmp_path):
    target = tmp_path / "checkpoint"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with atomic_dir(target) as tmp:
        assert tmp != target and tmp.parent == tmp_path
        (tmp / "b.txt").write_text("second")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert no_temp_files(tmp_path)


def test_atomic_dir_on_error_keeps_the_old_folder(tmp_path):
    target = tmp_path / "checkpoint"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("half")
            raise RuntimeError("crash while saving")
    assert (target / "a.txt").read_text() == "first"
    assert not (target / "half.txt").exists()
    assert no_temp_files(tmp_path)


# -- run folder ------------------------------------------------------------------------------


def test_matrix_round_trip_through_json_and_csv(tmp_path):
    folder = RunFolder(tmp_path / "run")
    matrix = make_matrix()
    folder.write_matrix(matrix)
    assert folder.read_matrix() == matrix
    with open(tmp_path / "run" / "matrix.csv", newline="") as handle:
        table = list(csv.reader(handle))
    assert table[0] == ["row", "dbpedia", "amazon", "wiki"]
    assert [r[0] for r in table[1:]] == matrix.row_labels
    parsed = [[None if c == "" else float(c) for c in r[1:]] for r in table[1:]]
    assert parsed == matrix.rows  # blank cell for None, exact floats
    assert no_temp_files(tmp_path / "run")


def test_run_folder_other_files(tmp_path):
    folder = RunFolder(tmp_path / "run")
    folder.write_config({"name": "r", "methods": ["seqft", {"name": "ewc", "lambda": 10}], "path": Path("x")})
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["methods"][1] == {"name": "ewc", "lambda": 10}
    assert folder.read_config()["path"] == "x"
    folder.write_metrics({"ap": {"value": 1.0, "definition": "d"}})
    assert folder.read_metrics() == {"ap": {"value": 1.0, "definition": "d"}}
    path = folder.write_predictions(2, "glue/sst2", [{"prediction": "a", "target": "a"}, {"prediction": "b"}])
    assert path.parent == tmp_path / "run" / "predictions" and path.name.startswith("row02_glue_sst2-")
    other = folder.write_predictions(2, "glue_sst2", [{"prediction": "c"}])
    assert other.name == "row02_glue_sst2.jsonl", "an unchanged name keeps its plain file name"
    assert [json.loads(line) for line in path.read_text().splitlines()][1] == {"prediction": "b"}
    general = GeneralScores(["mmlu"], [True], [[40.0], [42.0]], ["before training", "after A"])
    folder.write_general(general)
    assert folder.read_general() == general
    assert folder.log_path == tmp_path / "run" / "run.log"


def test_malformed_matrix_is_a_retain_error(tmp_path):
    (tmp_path / "matrix.json").write_text('{"task_names": ["a"]}')
    with pytest.raises(RetainError, match="matrix.json"):
        RunFolder(tmp_path).read_matrix()


# -- report ----------------------------------------------------------------------------------


def test_render_report_writes_plots_report_and_metrics(tmp_path):
    run = tmp_path / "run"
    folder = make_run(run, ["seqft"])
    folder.write_general(GeneralScores(["mmlu"], [True], [[40.0], [41.0], [42.0], [43.0]]))
    (run / "single_task.json").write_text(json.dumps({"dbpedia": 90.0, "amazon": 90.0}))
    text = render_report(run)

    for name in ("heatmap.png", "ap_curve.png"):
        assert (run / name).read_bytes()[:8] == PNG_MAGIC
    report = (run / "report.md").read_text()
    assert "| row | dbpedia | amazon | wiki (↓) |" in report
    assert "| after amazon | 70.00 | 90.00 | — |" in report
    assert "tiny-gpt2" in report and "heatmap.png" in report and "ap_curve.png" in report
    assert "BWT (GEM)" in report and "a[T][i] - a[i][i]" in report

    metrics = json.loads((run / "metrics.json").read_text())
    # AP = (60 + 85 + 20.5) / 3; BWT = ((60 - 80) + (85 - 90)) / 2 = -12.5
    assert metrics["ap"]["value"] == pytest.approx((60 + 85 + 20.5) / 3)
    assert metrics["bwt"]["value"] == pytest.approx(-12.5)
    assert metrics["general_delta"]["value"] == pytest.approx(3.0)
    assert metrics["fwt_single_task"]["value"] is None  # wiki has no single-task score
    assert "after wiki" in text and "BWT (GEM)" in text and "-12.50" in text
    assert no_temp_files(run)


def test_extra_sections_survive_a_later_render(tmp_path):
    run = tmp_path / "run"
    make_run(run, ["kif"])
    render_report(run, extra_sections=[("KIF units", "![units](units.png)")])
    render_report(run)  # what `retain report RUN_DIR` does
    assert "## KIF units" in (run / "report.md").read_text()


def test_render_report_without_matrix_names_the_folder(tmp_path):
    with pytest.raises(RetainError, match=str(tmp_path / "empty")):
        (tmp_path / "empty").mkdir()
        render_report(tmp_path / "empty")
    with pytest.raises(RetainError, match="no such run folder"):
        render_report(tmp_path / "missing")


def test_format_matrix_text_aligns_columns():
    lines = format_matrix_text(make_matrix()).splitlines()
    assert len({len(line) for line in lines[:2]}) == 1
    assert lines[-2].rstrip().endswith("—")


def test_unit_heatmap(tmp_path):
    path = plot_unit_heatmap([[0.1, None], [0.5, 0.9]], ["u0", "u1"], ["A", "B"], tmp_path / "u.png", "units")
    assert path.read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(ValueError):
        plot_unit_heatmap([[1.0]], ["u0", "u1"], ["A"], tmp_path / "bad.png", "bad")


# -- compare ---------------------------------------------------------------------------------


def test_compare_runs(tmp_path):
    make_run(tmp_path / "seq", ["seqft"])
    make_run(tmp_path / "kif", [{"name": "kif", "ratio": 0.5}, "replay"], final_row=False)
    (tmp_path / "bare").mkdir()
    table = compare_runs([tmp_path / "seq", tmp_path / "kif", tmp_path / "bare"])
    lines = table.strip().splitlines()
    assert lines[0] == "| methods | runs | seeds | AP | BWT (GEM) | FWT (GEM) | Forgetting (Chaudhry) | LA | tasks |"
    # seq: AP = (60 + 85 + 20.5) / 3 = 55.17; BWT = -12.5; FWT undefined (wiki has no a[1][2]);
    # LA = (80 + 90 + 20.5) / 3 = 63.5
    assert lines[2] == "| seqft | seq | — | 55.17 ± — (1) | -12.50 ± — (1) | — | 12.50 ± — (1) | 63.50 ± — (1) | 3/3 |"
    # kif stopped after amazon: AP = (70 + 90) / 2 = 80; BWT = 70 - 80 = -10; FWT = 25 - 20 = 5;
    # its values cover 2 of 3 tasks, so they are marked and never pooled
    assert lines[3] == ("| kif(ratio=0.5) + replay | kif (unfinished) | — | 80.00 ± — (1)* | -10.00 ± — (1)* "
                        "| 5.00 ± — (1)* | 10.00 ± — (1)* | 85.00 ± — (1)* | 2/3 |")
    assert lines[4] == "| — | bare (unfinished) | — | — | — | — | — | — | 0/? |"
    assert "* unfinished run" in table
    with pytest.raises(RetainError, match="nowhere"):
        compare_runs([tmp_path / "nowhere"])


def test_the_folder_of_other_processes_takes_only_run_folder_writes() -> None:
    """On a process other than the main one each RunFolder write does nothing; a read or a typo
    raises, as it would on the main process, instead of passing silently."""
    writes = {name for name in dir(RunFolder) if name.startswith("write_")}
    assert {"write_matrix", "write_general", "write_metrics", "write_predictions"} <= writes == NoWrites.WRITES
    stand_in = NoWrites()
    for name in writes:
        assert getattr(stand_in, name)("anything", variant="x") is None
    for name in ("write_matirx", "read_matrix", "path"):
        with pytest.raises(AttributeError, match=f"'{name}': not a write method of RunFolder"):
            getattr(stand_in, name)
