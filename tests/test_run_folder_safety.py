"""A finished run is never lost and a run folder never runs code: ``--overwrite`` whose start-up
fails, symbolic links as run names or ``output_dir``, and import-path metrics in a received folder.

Part of the bad-input corpus (see tests/test_bad_inputs.py): each refusal is one line, exit 2, no
traceback, and the folder it was about is left exactly as it was.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from retain.errors import RetainError
from retain.reporting.guard import MARKER_FILE, REPLACED_DIR, RESTORING_DIR, restore_replaced, set_aside_run_folder
from tests.test_bad_inputs import _assert_refused, _config, _main, _snapshot, _write


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import retain

    tmp = tmp_path_factory.mktemp("finished")
    return retain.run(_config(tmp), quiet=True).run_dir


@pytest.fixture
def finished_copy(finished_run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "runs" / "run"
    shutil.copytree(finished_run, target)
    return target


def _config_for(tmp_path: Path, **sections: Any) -> Path:
    return _write(tmp_path, _config(tmp_path, **sections))


# -- --overwrite: the old run stays until the new one has started ------------------------------------


BROKEN_TEMPLATES = [
    ("unclosed-tag", "{% for m in messages %}{{ m['content'] }"),
    ("drops-content", "{% for m in messages %}hello{% endfor %}"),
    ("undefined-filter", "{{ messages | no_such_filter }}"),
]


@pytest.mark.parametrize("template", [t for _, t in BROKEN_TEMPLATES], ids=[n for n, _ in BROKEN_TEMPLATES])
def test_overwrite_with_a_bad_chat_template_keeps_the_finished_run(
    finished_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], template: str
) -> None:
    before = _snapshot(finished_copy)
    config = _config_for(tmp_path, model={"name_or_path": "builtin:tiny-llama", "chat_template": template})
    code, err = _main(["run", str(config), "--quiet", "--overwrite"], capsys)
    _assert_refused(code, err, "model.chat_template: ")
    assert _snapshot(finished_copy) == before, "a refused --overwrite changed the finished run"


def test_a_start_up_that_fails_after_the_set_aside_puts_the_old_run_back(
    finished_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure after the folder was taken (here: while the trackers start) restores the old run."""
    from retain.engine import runner

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise RetainError("the step log refuses (a stand-in for any late start-up failure)")

    monkeypatch.setattr(runner, "StepLog", refuse)
    before = _snapshot(finished_copy)
    code, err = _main(["run", str(_config_for(tmp_path)), "--quiet", "--overwrite"], capsys)
    _assert_refused(code, err, "the step log refuses")
    assert _snapshot(finished_copy) == before
    assert not (finished_copy / REPLACED_DIR).exists()


def test_an_overwrite_that_starts_replaces_the_run(finished_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config_for(tmp_path, seed=8)
    code, err = _main(["run", str(config), "--quiet", "--overwrite"], capsys)
    assert code == 0, err
    assert yaml.safe_load((finished_copy / "config.yaml").read_text())["seed"] == 8
    assert not [p.name for p in finished_copy.iterdir() if p.name.startswith((".replaced", ".restoring"))]


def test_a_killed_overwrite_is_put_back_by_the_next_command(finished_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """kill -9 during the start-up leaves the old run set aside and a new config.yaml; the next
    command on the folder puts the old run back before it reads anything."""
    before = _snapshot(finished_copy)
    set_aside_run_folder(finished_copy, finished_copy.parent)
    (finished_copy / "config.yaml").write_text("half: made\n")
    (finished_copy / "run.log").write_text("started\n")
    code, err = _main(["run", "--resume", str(finished_copy), "--quiet"], capsys)
    assert code == 0, err
    assert "put back the run that an interrupted --overwrite had set aside" in err
    assert json.loads((finished_copy / "matrix.json").read_text()) == json.loads(
        (Path(str(finished_copy)) / "matrix.json").read_text()
    )
    after = _snapshot(finished_copy)
    assert after["config.yaml"] == before["config.yaml"] and after["checkpoint/state.json"] == before["checkpoint/state.json"]


def test_a_restore_killed_midway_finishes_on_the_next_call(finished_copy: Path) -> None:
    before = _snapshot(finished_copy)
    set_aside_run_folder(finished_copy, finished_copy.parent)
    (finished_copy / "config.yaml").write_text("new\n")
    (finished_copy / REPLACED_DIR).rename(finished_copy / RESTORING_DIR)  # the new files were gone ...
    (finished_copy / "config.yaml").unlink()
    (finished_copy / RESTORING_DIR / "matrix.json").rename(finished_copy / "matrix.json")  # ... one moved back
    assert restore_replaced(finished_copy)
    assert _snapshot(finished_copy) == before
    assert not restore_replaced(finished_copy)


# -- symbolic links -----------------------------------------------------------------------------------


def test_a_run_name_linked_to_an_empty_folder_outside_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "run").symlink_to(outside)
    code, err = _main(["run", str(_config_for(tmp_path)), "--quiet"], capsys)
    _assert_refused(code, err, "is a symbolic link to")
    assert list(outside.iterdir()) == [], "written through the link"
    assert (tmp_path / "runs" / "run").is_symlink()


@pytest.mark.parametrize("flag", [[], ["--overwrite"]], ids=["new", "overwrite"])
def test_a_dangling_link_as_the_run_name_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: list[str]) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "run").symlink_to(tmp_path / "gone")
    code, err = _main(["run", str(_config_for(tmp_path)), "--quiet", *flag], capsys)
    _assert_refused(code, err, "which does not exist")
    assert not (tmp_path / "gone").exists()


def test_a_dangling_link_as_output_dir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "runs").symlink_to(tmp_path / "scratch")
    code, err = _main(["run", str(_config_for(tmp_path)), "--quiet"], capsys)
    _assert_refused(code, err, "output_dir")
    assert not (tmp_path / "scratch").exists()


def test_output_dir_as_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "runs").write_text("not a folder")
    code, err = _main(["run", str(_config_for(tmp_path)), "--quiet"], capsys)
    _assert_refused(code, err, "exists and is not a folder")
    assert (tmp_path / "runs").read_text() == "not a folder"


def test_a_dangling_link_inside_output_dir_path_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "disk").symlink_to(tmp_path / "unmounted")
    config = _config(tmp_path)
    config["output_dir"] = str(tmp_path / "disk" / "runs")
    code, err = _main(["run", str(_write(tmp_path, config)), "--quiet"], capsys)
    _assert_refused(code, err, "dangling link")
    assert not (tmp_path / "unmounted").exists()


def test_output_dir_linked_to_a_real_folder_is_followed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "runs").symlink_to(scratch)
    code, err = _main(["run", str(_config_for(tmp_path)), "--quiet", "--stop-after", "1"], capsys)
    assert code == 0, err
    assert (scratch / "run" / MARKER_FILE).is_file()


def test_resume_follows_a_link_to_a_run_folder_inside_output_dir(finished_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    link = finished_copy.parent / "alias"
    link.symlink_to(finished_copy.name)
    code, err = _main(["run", "--resume", str(link), "--quiet"], capsys)
    assert code == 0, err
    outside = finished_copy.parent.parent / "outside-run"
    shutil.copytree(finished_copy, outside)
    link.unlink()
    link.symlink_to(outside)
    code, err = _main(["run", "--resume", str(link), "--quiet"], capsys)
    _assert_refused(code, err, "only --resume follows a link, to a marked run folder directly inside output_dir")


# -- a received folder never runs code ------------------------------------------------------------------


PLANTED = "planted_metric:Planted"


@pytest.fixture
def planted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    """A finished one-task run whose task is scored by an import-path metric; the metric's module
    leaves a trace file each time it is imported. Yields (run folder, trace file)."""
    import retain

    trace = tmp_path / "imported.txt"
    package = tmp_path / "planted"
    package.mkdir()
    (package / "planted_metric.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        Path({str(trace)!r}).write_text("the module ran")
        from retain.evaluation.metrics import Metric

        class Planted(Metric):
            display_name = "Planted"

            def score(self, prediction, target, source=""):
                return 1.0
    """))
    monkeypatch.syspath_prepend(str(package))
    data = tmp_path / "data.json"
    data.write_text(json.dumps([{"instruction": "say", "input": str(i), "output": "b"} for i in range(8)]))
    task = {"name": "t1", "format": "alpaca", "train": str(data), "eval": str(data), "metric": PLANTED}
    config = _config(tmp_path, stream={"benchmark": "custom", "tasks": [task]})
    run_dir = retain.run(config, quiet=True).run_dir
    trace.unlink()
    sys.modules.pop("planted_metric", None)
    from retain.evaluation.metrics import clear_metric_cache

    clear_metric_cache()
    yield run_dir, trace
    sys.modules.pop("planted_metric", None)
    clear_metric_cache()


def test_resume_of_a_received_folder_never_imports_its_metric(planted_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, trace = planted_run
    before = _snapshot(run_dir)
    code, err = _main(["run", "--resume", str(run_dir), "--quiet"], capsys)
    _assert_refused(code, err, f"stream.tasks[0].metric: {PLANTED}: an import path read from the run folder's {run_dir / 'config.yaml'}")
    assert f"--allow-import {PLANTED}" in err
    assert not trace.exists(), "the folder's metric module was imported"
    assert _snapshot(run_dir) == before


def test_allow_import_trusts_the_folder_metric(planted_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, trace = planted_run
    code, err = _main(["run", "--resume", str(run_dir), "--quiet", "--allow-import", PLANTED], capsys)
    assert code == 0, err
    assert trace.exists()


@pytest.mark.parametrize("command", ["report", "compare"])
def test_report_and_compare_of_a_received_folder_import_nothing(
    planted_run: tuple[Path, Path], capsys: pytest.CaptureFixture[str], command: str
) -> None:
    run_dir, trace = planted_run
    code, err = _main([command, str(run_dir)], capsys)
    assert code == 0, err
    assert not trace.exists(), f"retain {command} imported a module named by the folder"


def test_the_python_api_resume_needs_the_import_path_too(planted_run: tuple[Path, Path]) -> None:
    import retain
    from retain.errors import ConfigError

    run_dir, trace = planted_run
    with pytest.raises(ConfigError, match="never imported"):
        retain.run(run_dir, resume=True, quiet=True)
    assert not trace.exists()
    retain.run(run_dir, resume=True, quiet=True, allow_imports=[PLANTED])
    assert trace.exists()
