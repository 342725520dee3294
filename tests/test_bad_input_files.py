"""A corpus of bad input *files*: data files of every format, sweep files, exports, named pipes,
encodings. Each one must give exit status 2 and one line naming the file, record, column or key,
with nothing printed before it (no warning, no library progress line), no traceback, and nothing
written (the folders around it are compared byte for byte before and after).

Everything runs in-process through the CLI's ``main`` (as in :mod:`tests.test_bad_inputs`, whose
helpers this reuses), with ``capfd`` so a library writing to the real stderr is seen too; warnings
are recorded and count as printed lines. A few cases also go through the real command line in a
subprocess, where stderr is exactly what a user sees.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from retain.cli import main
from tests.test_bad_inputs import SMALL, _assert_refused, _config, _snapshot, _write
from tests.conftest import tiny_config

RETAIN = Path(sys.executable).parent / "retain"


def _cli(argv: list[str], capfd: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of ``retain ARGV``; each warning raised counts as a line of stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own refusals
            code = exc.code
    err = capfd.readouterr().err
    shown = "".join(f"{w.filename}:{w.lineno}: {w.category.__name__}: {w.message}\n" for w in caught)
    return code, shown + err


def _everything(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (files by content, the rest by kind): a refusal changes none."""
    found = _snapshot(folder)
    for path in folder.rglob("*"):
        if not path.is_file():
            found[str(path.relative_to(folder))] = "dir" if path.is_dir() else "other"
    return found


# -- data files ---------------------------------------------------------------------------------

ALPACA = [{"instruction": "say", "input": "a", "output": "b"}] * 4


def _task(fmt: str, train: Path, evaluation: Path | None = None, **extra: Any) -> dict[str, Any]:
    return {"benchmark": "custom", "tasks": [{"name": "t1", "format": fmt, "train": str(train),
                                              "eval": str(evaluation or train), **extra}]}


def _folder_task(fmt: str, folder: Path, **extra: Any) -> dict[str, Any]:
    return {"benchmark": "custom", "tasks": [{"name": "t1", "format": fmt, "path": str(folder), **extra}]}


def _file(root: Path, name: str, content: Any) -> Path:
    """``content``: bytes, text, or a value written as JSON."""
    path = root / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")
    return path


def _fifo(root: Path, name: str) -> Path:
    path = root / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def _subfolder(root: Path, name: str) -> Path:
    path = root / "data" / name
    path.mkdir(parents=True)
    (path / "inside.json").write_text(json.dumps(ALPACA))
    return path


def _dangling(root: Path, name: str) -> Path:
    path = root / "data" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(root / "data" / "gone.json")
    return path


def _alpaca(root: Path, content: Any, name: str = "train.json", **extra: Any) -> dict[str, Any]:
    return _task("alpaca", _file(root, name, content), _file(root, "eval.json", ALPACA), **extra)


def _hf(root: Path, name: str, content: Any, **extra: Any) -> dict[str, Any]:
    return _task("hf", _file(root, name, content), **extra)


def _olora(root: Path, train: Any = None, labels: Any = ("a", "b"), **extra: Any) -> dict[str, Any]:
    folder = root / "data" / "task"
    folder.mkdir(parents=True)
    records = [{"sentence": f"s{i}", "label": "ab"[i % 2]} for i in range(4)]
    for split in ("train", "dev"):
        (folder / f"{split}.json").write_text(json.dumps(records))
    if train is not None:
        (folder / "train.json").write_text(train if isinstance(train, str) else json.dumps(train))
    if labels is not None:
        (folder / "labels.json").write_text(labels if isinstance(labels, str) else json.dumps(list(labels)))
    return _folder_task("olora", folder, **extra)


def _trace(root: Path, train: Any = None, evaluation: Any = "same") -> dict[str, Any]:
    folder = root / "data" / "task"
    folder.mkdir(parents=True)
    records = [{"prompt": f"p{i}", "answer": "ab"[i % 2]} for i in range(4)]
    content = train if train is not None else records
    (folder / "train.json").write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    if evaluation == "same":
        (folder / "eval.json").write_text(json.dumps(records))
    return _folder_task("trace", folder)


def _superni(root: Path, **changes: Any) -> dict[str, Any]:
    task: dict[str, Any] = {
        "Definition": ["Name the colour."],
        "Positive Examples": [{"input": "sky", "output": "blue"}],
        "Instances": [{"id": f"i{i}", "input": f"thing {i}", "output": ["red"]} for i in range(4)],
    }
    task.update(changes)
    for key in [k for k, v in task.items() if v is None]:
        del task[key]
    return _task("superni", _file(root, "task1_colours.json", task))


def _superni_benchmark(root: Path, **changes: Any) -> dict[str, Any]:
    """The superni benchmark cut to one task, over natural-instructions' tasks/ folder."""
    name = "task363_sst2_polarity_classification"
    task: dict[str, Any] = {"Definition": ["Classify."], "Positive Examples": [], **changes}
    _file(root, f"natural-instructions/tasks/{name}.json", task)
    return {"benchmark": "superni", "data_root": str(root / "data" / "natural-instructions"), "order": 11, "tasks": [name]}


def _olora_labels_fifo(root: Path) -> dict[str, Any]:
    stream = _olora(root, labels=None)
    os.mkfifo(Path(stream["tasks"][0]["path"]) / "labels.json")
    return stream


def _trace_eval_folder(root: Path) -> dict[str, Any]:
    stream = _trace(root, evaluation=None)
    (Path(stream["tasks"][0]["path"]) / "eval.json").mkdir()
    return stream


def _olora_path_is_a_file(root: Path) -> dict[str, Any]:
    return _folder_task("olora", _file(root, "task.json", ALPACA))


LATIN1 = '[{"instruction": "caf\xe9", "output": "b"}]'.encode("latin-1")

DATA_FILE_CASES: list[tuple[str, Callable[[Path], dict[str, Any]], str]] = [
    # alpaca (JSON list / JSON Lines)
    ("alpaca-fifo", lambda p: _task("alpaca", _fifo(p, "train.json")), "train.json: is a named pipe (FIFO), not a regular file"),
    ("alpaca-folder", lambda p: _task("alpaca", _subfolder(p, "train.json")), "train.json: is a folder, not a file"),
    ("alpaca-dangling-link", lambda p: _task("alpaca", _dangling(p, "train.json")), "train.json: file not found (a symbolic link to"),
    ("alpaca-latin1", lambda p: _alpaca(p, LATIN1), "train.json: not UTF-8 text (byte 21, line 1: b'\\xe9')"),
    ("alpaca-jsonl-bad-line", lambda p: _alpaca(p, '{"instruction": "a", "output": "b"}\n{"instruction": \n', "train.jsonl"), "train.jsonl: not valid JSON (line 2"),
    ("alpaca-record-not-object", lambda p: _alpaca(p, [ALPACA[0], 7]), "train.json record 1: expected an object with named fields, got int"),
    ("alpaca-output-not-string", lambda p: _alpaca(p, [{"instruction": "a", "output": 5}]), "train.json record 0: field 'output' must be a string, got int"),
    ("alpaca-id-a-list", lambda p: _alpaca(p, [{"id": [1], "instruction": "a", "output": "b"}]), "train.json record 0: field 'id' must be a string or integer"),
    ("alpaca-duplicate-id", lambda p: _alpaca(p, [{"id": "x", "instruction": "a", "output": "b"}] * 2), "train.json record 1 (id x): duplicate id"),
    ("alpaca-blank-file", lambda p: _alpaca(p, "  \n\n"), "train.json: the file is empty"),
    ("alpaca-mapped-field-missing", lambda p: _alpaca(p, ALPACA, fields={"output": "label"}), "train.json record 0: missing field 'label' (mapped from 'output')"),
    ("alpaca-every-target-empty", lambda p: _alpaca(p, [{"instruction": "a", "output": " "}] * 3), "task 't1': no train examples left from"),
    # hf (local csv / json / jsonl through the datasets library)
    ("hf-csv-mapped-column-missing", lambda p: _hf(p, "data.csv", "question,answer\nq,a\nr,b\n", fields={"prompt": "text_col"}), "data.csv: missing column 'text_col' (mapped from 'prompt' by fields.prompt)"),
    ("hf-csv-column-missing", lambda p: _hf(p, "data.csv", "question,answer\nq,a\nr,b\n"), "data.csv: missing column 'prompt' (the columns are answer, question"),
    ("hf-csv-mapped-id-missing", lambda p: _hf(p, "data.csv", "prompt,answer\nq,a\n", fields={"id": "uid"}), "data.csv: missing column 'uid' (mapped from 'id' by fields.id)"),
    ("hf-csv-no-target-column", lambda p: _hf(p, "data.csv", "x,y\n1,2\n"), "data.csv: columns x, y hold none of output / answer / text"),
    ("hf-csv-latin1", lambda p: _hf(p, "data.csv", "prompt,answer\nq\xe9,a\n".encode("latin-1")), "data.csv: not UTF-8 text (byte 15, line 2: b'\\xe9')"),
    ("hf-csv-header-only", lambda p: _hf(p, "data.csv", "prompt,answer\n\n"), "data.csv: has a header (prompt,answer) but no records"),
    ("hf-csv-empty", lambda p: _hf(p, "data.csv", ""), "data.csv: the file is empty"),
    ("hf-csv-column-twice", lambda p: _hf(p, "data.csv", "prompt,answer,answer\nq,a,b\n"), "data.csv: the header names column 'answer' twice"),
    ("hf-csv-fifo", lambda p: _task("hf", _fifo(p, "data.csv")), "data.csv: is a named pipe (FIFO), not a regular file"),
    ("hf-json-malformed", lambda p: _hf(p, "data.json", '[{"prompt": "a", "answer": '), "data.json: not valid JSON (line 1, column 28"),
    ("hf-json-empty-list", lambda p: _hf(p, "data.json", []), "data.json: no records"),
    ("hf-jsonl-latin1", lambda p: _hf(p, "data.jsonl", '{"prompt": "caf\xe9", "answer": "b"}\n'.encode("latin-1")), "data.jsonl: not UTF-8 text (byte 15, line 1"),
    ("hf-jsonl-bad-line", lambda p: _hf(p, "data.jsonl", '{"prompt": "a", "answer": "b"}\n{"prompt": \n'), "data.jsonl: not valid JSON (line 2"),
    ("hf-local-file-missing", lambda p: _task("hf", p / "data" / "nope.csv"), "nope.csv: file not found"),
    # olora (task folder)
    ("olora-no-folder", lambda p: _folder_task("olora", p / "data" / "none"), "none: task folder not found"),
    ("olora-path-is-a-file", _olora_path_is_a_file, "task.json: is a file, not a task folder"),
    ("olora-labels-not-a-list", lambda p: _olora(p, labels='{"a": 1}'), "labels.json: expected a non-empty JSON list of label strings"),
    ("olora-labels-malformed", lambda p: _olora(p, labels='["a", '), "labels.json: not valid JSON (line 1"),
    ("olora-labels-fifo", _olora_labels_fifo, "labels.json: is a named pipe (FIFO), not a regular file"),
    ("olora-sentence-missing", lambda p: _olora(p, train=[{"label": "a"}]), "train.json record 0: missing field 'sentence'"),
    ("olora-no-labels-or-instruction", lambda p: _olora(p, labels=None), "no labels.json, instruction.txt or instructions.json"),
    # trace (task folder)
    ("trace-no-eval-file", lambda p: _trace(p, evaluation=None), "no evaluation file (looked for dev.json, eval.json, test.json"),
    ("trace-eval-is-a-folder", _trace_eval_folder, "eval.json: is a folder, not a file"),
    ("trace-answer-missing", lambda p: _trace(p, train=[{"prompt": "p"}]), "train.json record 0: missing field 'answer'"),
    ("trace-latin1", lambda p: _trace(p, train='[{"prompt": "caf\xe9", "answer": "a"}]'.encode("latin-1")), "train.json: not UTF-8 text (byte 16, line 1"),
    # superni (one task file)
    ("superni-no-definition", lambda p: _superni(p, Definition=None), "task1_colours.json: missing field 'Definition'"),
    ("superni-instances-not-a-list", lambda p: _superni(p, Instances={"id": "i0"}), "task1_colours.json: missing field 'Instances'"),
    ("superni-instance-without-output", lambda p: _superni(p, Instances=[{"id": "i0", "input": "x"}]), "task1_colours.json Instances record 0 (id i0): missing field 'output'"),
    ("superni-top-level-list", lambda p: _task("superni", _file(p, "task1.json", [])), "task1.json: expected one task object"),
    ("superni-fifo", lambda p: _task("superni", _fifo(p, "task1.json")), "task1.json: is a named pipe (FIFO), not a regular file"),
    ("superni-benchmark-task-without-instances", _superni_benchmark, "task363_sst2_polarity_classification.json: missing field 'Instances'"),
    # text (continual pre-training)
    ("text-only-blank-lines", lambda p: _task("text", _file(p, "corpus.txt", "\n \n\n")), "corpus.txt: no records"),
    ("text-folder", lambda p: _task("text", _subfolder(p, "corpus.txt")), "corpus.txt: is a folder, not a file"),
]


@pytest.mark.parametrize(("make", "fragment"), [c[1:] for c in DATA_FILE_CASES], ids=[c[0] for c in DATA_FILE_CASES])
def test_bad_data_file(tmp_path: Path, capfd: pytest.CaptureFixture[str], make: Callable[[Path], dict[str, Any]], fragment: str) -> None:
    config = _write(tmp_path, _config(tmp_path, stream=make(tmp_path)))
    before = _everything(tmp_path)
    code, err = _cli(["run", str(config), "--quiet"], capfd)
    _assert_refused(code, err, fragment)
    assert err.startswith("error: "), f"something was printed before the error line:\n{err}"
    assert _everything(tmp_path) == before, "a refused run wrote or changed something"
    assert not (tmp_path / "runs").exists()


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """Opening a named pipe for reading waits for a writer: the readers never do."""
    from retain.data.files import read_text
    from retain.errors import DataError

    fifo = _fifo(tmp_path, "train.json")
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from retain.data.readers import read_alpaca; read_alpaca(sys.argv[1])", str(fifo)],
        capture_output=True, text=True, timeout=60,
    )
    assert "is a named pipe (FIFO)" in done.stderr
    with pytest.raises(DataError, match="is a named pipe"):
        read_text(fifo)


def test_utf8_check_of_a_large_file_names_the_byte_across_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The streaming check (for files the datasets library reads) finds the same byte and line as
    a whole decode, also when a multi-byte character or the bad byte straddles a chunk."""
    from retain.data import files
    from retain.errors import DataError

    text = ("line é\n" * 5).encode("utf-8") + b"bad \xe9 byte\n"
    path = tmp_path / "big.csv"
    path.write_bytes(text)
    bad = text.index(bytes([0xE9, 0x20]))
    expected = f"(byte {bad}, line 6: " + repr(bytes([0xE9])) + ")"
    for chunk in (1, 2, 3, 7, 1 << 20):
        monkeypatch.setattr(files, "_CHUNK", chunk)
        with pytest.raises(DataError) as info:
            files.check_utf8(path)
        assert expected in str(info.value), (chunk, str(info.value))
    with pytest.raises(DataError) as info:
        files.read_text(path)
    assert expected in str(info.value)


NOISY_CASES = ["hf-csv-mapped-column-missing", "hf-csv-latin1", "hf-csv-header-only", "alpaca-every-target-empty"]


@pytest.mark.parametrize("case", NOISY_CASES)
def test_the_real_command_line_prints_only_the_error(tmp_path: Path, case: str) -> None:
    """These printed a datasets progress line ("Generating train split"), its log line ("Failed to
    read file ...") or a warning with a line of Python source before the error: stderr as a user
    sees it is now that one line."""
    make, fragment = next((m, f) for name, m, f in DATA_FILE_CASES if name == case)
    config = _write(tmp_path, _config(tmp_path, stream=make(tmp_path)))
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([str(RETAIN), "run", str(config), "--quiet"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error: ") and fragment in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "runs").exists()


def test_held_warnings_are_given_out_when_the_stream_is_good(tmp_path: Path) -> None:
    """Reading holds its warnings only until the stream is built: a good stream still reports the
    records it left out."""
    from retain.config import make_config
    from retain.data.benchmarks import build_stream
    from retain.data.readers import DataWarning

    records = [{"instruction": "a", "output": x} for x in ("b", "c", "", "b", "c")]
    config = make_config(_config(tmp_path, stream=_alpaca(tmp_path, records)))
    with pytest.warns(DataWarning, match="1 record with an empty target left out"):
        stream = build_stream(config.stream, config.seed)
    assert len(stream.tasks[0].train) == 4


# -- sweep files --------------------------------------------------------------------------------


def _base() -> dict[str, Any]:
    return {"model": {"name_or_path": "builtin:tiny-bert"}, "stream": dict(SMALL), "train": {"epochs": 1, "batch_size": 8}}


def _sweep(root: Path, **changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": "grid", "output_dir": str(root / "sweeps"), "base": _base(), "methods": ["seqft"], "seeds": [1]}
    spec.update(changes)
    return {k: v for k, v in spec.items() if v is not ...}


def _sweep_with_base_file(root: Path, text: str) -> dict[str, Any]:
    (root / "base.yaml").write_text(text)
    return _sweep(root, base="base.yaml")


def _sweep_with_base_folder(root: Path) -> dict[str, Any]:
    (root / "base.yaml").mkdir()
    return _sweep(root, base="base.yaml")


SWEEP_CASES: list[tuple[str, Callable[[Path], Any], str]] = [
    ("no-base", lambda p: _sweep(p, base=...), "s.yaml: base: required"),
    ("base-null", lambda p: _sweep(p, base=None), "s.yaml: base: required"),
    ("base-a-number", lambda p: _sweep(p, base=5), "s.yaml: base: expected a config path or a mapping, got 5"),
    ("base-file-missing", lambda p: _sweep(p, base="missing.yaml"), "missing.yaml: config file not found"),
    ("base-file-a-folder", _sweep_with_base_folder, "base.yaml: is a folder, not a config file"),
    ("base-file-not-yaml", lambda p: _sweep_with_base_file(p, "train: [\n"), "base.yaml: not valid YAML"),
    ("base-file-unknown-key", lambda p: _sweep_with_base_file(p, "trian: {}\n"), "trian: unknown key"),
    ("unknown-key", lambda p: _sweep(p, method=["seqft"]), "s.yaml: method: unknown key"),
    ("unknown-method", lambda p: _sweep(p, methods=["seqft", "replya"]), "unknown method 'replya'"),
    ("method-bad-parameter", lambda p: _sweep(p, methods=[[{"name": "replay", "ratio": 7}]]), "replay.ratio"),
    ("methods-empty", lambda p: _sweep(p, methods=[]), "s.yaml: methods: list at least one"),
    ("methods-entry-unknown-key", lambda p: _sweep(p, methods=[{"methods": ["seqft"], "lr": 1}]), "s.yaml: methods[0]: unknown key 'lr'"),
    ("seeds-not-integers", lambda p: _sweep(p, seeds=["x"]), "s.yaml: seeds: expected a list of integers"),
    ("seeds-twice", lambda p: _sweep(p, seeds=[1, 1]), "s.yaml: seeds: [1, 1] lists a value twice"),
    ("orders-of-demo", lambda p: _sweep(p, orders=[1]), "orders: stream.benchmark 'demo' has no orders"),
    ("settings-without-label", lambda p: _sweep(p, settings=[{"overrides": {}}]), "s.yaml: settings[0]: expected {label"),
    ("override-unknown-key", lambda p: _sweep(p, overrides={"train.lrr": 1}), "train.lrr: unknown key"),
    ("override-bad-value", lambda p: _sweep(p, overrides={"train.lr": -1}), "train.lr: must be > 0"),
    ("name-a-path", lambda p: _sweep(p, name="a/b"), "s.yaml: name: 'a/b' must be a plain folder name"),
    ("top-level-list", lambda p: "- seqft\n", "s.yaml: the top level must be a mapping"),
    ("not-yaml", lambda p: "methods: [seqft\n", "s.yaml: not valid YAML"),
    ("latin1", lambda p: "name: caf\xe9\n".encode("latin-1"), "s.yaml: not UTF-8 text (byte 9)"),
]


@pytest.mark.parametrize(("make", "fragment"), [c[1:] for c in SWEEP_CASES], ids=[c[0] for c in SWEEP_CASES])
def test_bad_sweep_file(tmp_path: Path, capfd: pytest.CaptureFixture[str], make: Callable[[Path], Any], fragment: str) -> None:
    content = make(tmp_path)
    path = tmp_path / "s.yaml"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    before = _everything(tmp_path)
    code, err = _cli(["sweep", str(path), "--quiet"], capfd)
    _assert_refused(code, err, fragment)
    assert err.startswith("error: ")
    assert _everything(tmp_path) == before and not (tmp_path / "sweeps").exists()


@pytest.mark.parametrize("kind", ["missing", "folder", "fifo"])
def test_a_sweep_path_that_is_no_file(tmp_path: Path, capfd: pytest.CaptureFixture[str], kind: str) -> None:
    path = tmp_path / "s.yaml"
    if kind == "folder":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    fragment = {"missing": "s.yaml: sweep file not found", "folder": "s.yaml: is a folder, not a sweep file",
                "fifo": "s.yaml: is a named pipe (FIFO), not a regular file"}[kind]
    code, err = _cli(["sweep", str(path)], capfd)
    _assert_refused(code, err, fragment)


_HOLDER = """
import sys, time
from pathlib import Path
from retain.reporting.guard import RunLock
with RunLock(Path(sys.argv[1])):
    print("holding", flush=True)
    time.sleep(120)
"""


def test_a_sweep_folder_held_by_another_process_is_refused(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A second ``retain sweep`` of a folder a live sweep holds stops at once, naming that
    process, and writes nothing: no sweep.yaml, no line in sweep.log, no summary."""
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(_sweep(tmp_path)))
    folder = tmp_path / "sweeps" / "grid"
    folder.mkdir(parents=True)
    (folder / "sweep.log").write_text("the first sweep's lines\n")
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        before = _everything(tmp_path)
        code, err = _cli(["sweep", str(path), "--quiet"], capfd)
        _assert_refused(code, err, f"{folder}: in use by another retain process (pid {holder.pid})")
        assert _everything(tmp_path) == before
        assert sorted(p.name for p in folder.iterdir()) == [".lock", "sweep.log"]
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()


# -- exports ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny finished run keeping only its last task's model (the default)."""
    import retain

    tmp = tmp_path_factory.mktemp("finished")
    return retain.run(tiny_config(tmp, name="done", stream=dict(SMALL)), quiet=True).run_dir


def _run_copy(run: Path, root: Path, change: Callable[[Path], Any] = lambda d: None) -> Path:
    import shutil

    target = root / "runs" / "copy"
    shutil.copytree(run, target)
    change(target)
    return target


def _busy(root: Path) -> Path:
    (root / "busy").mkdir()
    (root / "busy" / "mine.txt").write_text("keep me")
    return root / "busy"


def _a_file(root: Path, name: str) -> Path:
    (root / name).write_text("not a folder")
    return root / name


def _dangling_out(root: Path) -> Path:
    (root / "out").symlink_to(root / "nowhere")
    return root / "out"


EXPORT_CASES: list[tuple[str, Callable[[Path, Path], list[str]], str]] = [
    ("not-a-run-folder", lambda r, p: [str(_busy(p)), str(p / "out")], "busy: not a retain run folder"),
    ("no-such-run-folder", lambda r, p: [str(p / "none"), str(p / "out")], "none: no such run folder"),
    ("run-folder-is-a-file", lambda r, p: [str(_a_file(p, "run.txt")), str(p / "out")], "run.txt: is a file, not a run folder"),
    ("destination-not-empty", lambda r, p: [str(r), str(_busy(p))], "busy: exists and is not an empty folder"),
    ("destination-is-a-file", lambda r, p: [str(r), str(_a_file(p, "out"))], "out: exists and is a file, not a folder"),
    ("destination-parent-is-a-file", lambda r, p: [str(r), str(_a_file(p, "parent") / "out")], "parent: is a file, not a folder"),
    ("destination-dangling-link", lambda r, p: [str(r), str(_dangling_out(p))], "out: is a symbolic link to"),
    ("after-task-too-large", lambda r, p: [str(r), str(p / "out"), "--after-task", "3"], "--after-task 3: the run has tasks 1 to 2"),
    ("after-task-zero", lambda r, p: [str(r), str(p / "out"), "--after-task", "0"], "--after-task 0: the run has tasks 1 to 2"),
    ("after-task-not-kept", lambda r, p: [str(r), str(p / "out"), "--after-task", "1"], "kept no model after task 1 (kept: 2)"),
    ("merge-without-lora", lambda r, p: [str(r), str(p / "out"), "--merge"], "nothing to merge"),
    ("model-record-damaged", lambda r, p: [str(_run_copy(r, p, lambda d: (d / "models" / "task-02" / "retain_model.json").write_text("{"))), str(p / "out")], "retain_model.json: cannot be read"),
    ("kept-model-removed", lambda r, p: [str(_run_copy(r, p, lambda d: __import__("shutil").rmtree(d / "models"))), str(p / "out")], "holds no kept model"),
]


@pytest.mark.parametrize(("argv", "fragment"), [c[1:] for c in EXPORT_CASES], ids=[c[0] for c in EXPORT_CASES])
def test_bad_export(finished_run: Path, tmp_path: Path, capfd: pytest.CaptureFixture[str], argv: Callable[[Path, Path], list[str]], fragment: str) -> None:
    args = argv(finished_run, tmp_path)
    before, run_before = _everything(tmp_path), _snapshot(finished_run)
    code, err = _cli(["export", *args], capfd)
    _assert_refused(code, err, fragment)
    assert _everything(tmp_path) == before, "a refused export wrote or changed something"
    assert _snapshot(finished_run) == run_before and not (tmp_path / "out").is_dir()


def test_corpus_size() -> None:
    """The issue asked for at least 30 distinct bad input files; keep it that way."""
    assert len(DATA_FILE_CASES) + len(SWEEP_CASES) + len(EXPORT_CASES) >= 30
