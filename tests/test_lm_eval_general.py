"""General ability through lm-evaluation-harness: one test per integration point.

lm-eval's real tasks come from the Hub, which the tests cannot reach: they use three local tasks
(tests/lm_eval_fixture.py: multiple choice, generation, log-likelihood) on a saved tiny model.
The runs that take longest (lm-eval's own command line on the saved model, two torchrun
processes, the in-process reference run) are started together by one fixture, so that they share
the machine's cores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval")

import retain  # noqa: E402
from retain.config import StreamConfig  # noqa: E402
from retain.data.benchmarks import build_stream  # noqa: E402
from retain.errors import ConfigError  # noqa: E402
from retain.evaluation.lm_eval_general import PRESETS, build_lm_eval_sets, score_row  # noqa: E402
from tests.lm_eval_fixture import TASKS, run_config, write_model, write_tasks  # noqa: E402

BIN = Path(sys.executable).parent
HAS_TORCHRUN = shutil.which("torchrun", path=str(BIN)) is not None
DDP_DRIVER = Path(__file__).with_name("lm_eval_ddp.py")
ENV = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
#: the entries' settings, as lm-eval's command line is given them (tests/lm_eval_fixture.py)
CLI_SETTINGS = ["--num_fewshot", "1", "--limit", "8", "--batch_size", "4", "--seed", "7"]
#: relative difference accepted between two processes' and one's perplexity (DDP adds the two
#: processes' gradients in another order than accumulation does: the weights differ in the last bits)
PERPLEXITY_TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lm-eval")
    write_tasks(folder / "tasks")
    write_model(folder / "model")
    return folder


@pytest.fixture(scope="module")
def runs(root: Path) -> dict[str, Any]:
    """lm-eval's command line on the saved model, a 2-process FSDP run and the same run in this
    process, at once. Returns the single run's result and the two launches' output folders.

    FSDP rather than DDP here: it is the case that needs the most (the rows are scored on gathered
    parameters, and generation must be told not to synchronise: it hung before); the DDP launch is
    the slow test below."""
    cli_out, ddp_out = root / "cli", root / "ddp"
    ddp_out.mkdir()
    cli = subprocess.Popen(
        [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", f"pretrained={root / 'model'}",
         "--tasks", ",".join(TASKS), "--include_path", str(root / "tasks"), "--device", "cpu",
         *CLI_SETTINGS, "--output_path", str(cli_out)],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=root,
    )
    ddp = subprocess.Popen(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(DDP_DRIVER), str(root), str(ddp_out),
         "fsdp"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=root,
    ) if HAS_TORCHRUN else None
    try:
        single = retain.run(run_config(root, root / "single"), quiet=True)
        _, cli_err = cli.communicate(timeout=300)
        ddp_err = ddp.communicate(timeout=300)[1] if ddp is not None else ""
    finally:
        for process in (cli, ddp):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    assert cli.returncode == 0, cli_err[-3000:]
    if ddp is not None:
        assert ddp.returncode == 0, ddp_err[-3000:]
    return {"single": single, "cli": cli_out, "ddp": ddp_out if ddp is not None else None}


def _general(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "general.json").read_text())


def _cli_scores(folder: Path) -> dict[str, dict[str, float]]:
    (results,) = folder.rglob("results_*.json")
    return json.loads(results.read_text())["results"]


def test_row_zero_is_scored_before_training(root: Path, runs: dict[str, Any]) -> None:
    """Row 0 of the general rows is the model before any training: lm-eval on the saved model as
    loaded, with the run's settings and seed; lm-eval's full results are kept beside it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = run_config(root, root / "unused")
    specs = build_lm_eval_sets(config["stream"]["general"], config["stream"]["lm_eval_include_path"])
    model = AutoModelForCausalLM.from_pretrained(root / "model").eval()
    scores, _ = score_row(model, AutoTokenizer.from_pretrained(root / "model"), specs, 4, 7)
    run_dir = runs["single"].run_dir
    assert _general(run_dir)["rows"][0] == scores
    record = json.loads((run_dir / "general" / "lm_eval_row0.json").read_text())
    assert record["row"] == 0 and [s["name"] for s in record["sets"]] == ["tiny_mc", "gen", "tiny_ppl"]
    assert [s["score"] for s in record["sets"]] == scores
    (call,) = record["calls"]  # the three sets share their settings: one lm-eval call, as on the command line
    assert call["seed"] == 7 and call["results"]["n-shot"] == {"tiny_mc": 1, "tiny_gen": 1, "tiny_ppl": 1}


def test_every_row_is_scored_and_gives_the_general_delta(runs: dict[str, Any]) -> None:
    """Before training and after each of the 2 tasks: rows 0, 1, 2 in general.json (one lm-eval
    results file each), the metric lm-eval reported recorded per set, ΔGA over them, and the
    report's general section."""
    run_dir = runs["single"].run_dir
    general = _general(run_dir)
    assert general["names"] == ["tiny_mc", "gen", "tiny_ppl"]
    assert general["metrics"] == ["lm-eval/acc,none", "lm-eval/ter,none", "lm-eval/perplexity,none"]
    assert general["higher_is_better"] == [True, False, False]  # lm-eval's own directions
    rows = general["rows"]
    assert len(rows) == 3
    assert len({row[2] for row in rows}) == 3, "the perplexity moves as the model trains"
    assert all(0 <= row[0] <= 100 for row in rows)  # a fraction, scaled to retain's 0-100
    assert sorted(p.name for p in (run_dir / "general").iterdir()) == [f"lm_eval_row{k}.json" for k in range(3)]
    signed = [rows[2][0] - rows[0][0], rows[0][1] - rows[2][1], rows[0][2] - rows[2][2]]
    assert runs["single"].metrics["general_delta"]["value"] == pytest.approx(sum(signed) / 3)
    report = (run_dir / "report.md").read_text()
    assert "tiny_ppl (↓)" in report and "gen (↓)" in report and "lm-eval perplexity,none" in report


def test_scores_agree_with_lm_eval_command_line(runs: dict[str, Any]) -> None:
    """Row 0 (the saved model, scored in memory through lm-eval's HF wrapper) equals what
    ``python -m lm_eval --model hf`` reports on the same saved model, tasks and settings."""
    cli = _cli_scores(runs["cli"])
    row = _general(runs["single"].run_dir)["rows"][0]
    assert row[0] == 100 * cli["tiny_mc"]["acc,none"]
    assert row[1] == cli["tiny_gen"]["ter,none"] > 0  # TER is already a percentage: kept as it is
    assert row[2] == cli["tiny_ppl"]["perplexity,none"]


def _check_two_processes(launch: Path, single: Path) -> None:
    """Process 0 ran lm-eval (3 sets x 3 rows), process 1 never; the rows are one process's."""
    assert json.loads((launch / "calls-0.json").read_text()) == ["tiny_mc", "gen", "tiny_ppl"] * 3
    assert json.loads((launch / "calls-1.json").read_text()) == []
    two, one = _general(launch)["rows"], _general(single)["rows"]
    for row_two, row_one in zip(two, one, strict=True):
        assert row_two[:2] == row_one[:2]
        assert row_two[2] == pytest.approx(row_one[2], rel=PERPLEXITY_TOLERANCE)


@pytest.mark.skipif(not HAS_TORCHRUN, reason="torchrun not installed")
def test_two_processes_score_once_with_the_single_process_scores(runs: dict[str, Any]) -> None:
    """Two torchrun processes (gloo) under FSDP train on the same global batch as one process and
    score the same rows, lm-eval running on process 0 only."""
    _check_two_processes(runs["ddp"], runs["single"].run_dir)


@pytest.mark.slow
@pytest.mark.skipif(not HAS_TORCHRUN, reason="torchrun not installed")
def test_two_ddp_processes_score_once_with_the_single_process_scores(root: Path, runs: dict[str, Any]) -> None:
    """The same under DDP (unsharded: no gathering, generation not FSDP-managed)."""
    out = root / "ddp-plain"
    out.mkdir()
    launched = subprocess.run(
        [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", "2", str(DDP_DRIVER), str(root), str(out), "none"],
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=root, timeout=300,
    )
    assert launched.returncode == 0, launched.stderr[-3000:]
    _check_two_processes(out, runs["single"].run_dir)


def test_lora_model_is_scored_with_its_adapters_and_rows_survive_resume(root: Path) -> None:
    """A LoRA run scores the PEFT model in memory (adapters active: row 1 is what lm-eval gives the
    trained PeftModel, not the base model's row 0); stopped after task 1 and resumed, it keeps
    rows 0 and 1 and scores row 2 only."""
    config = run_config(root, root / "lora", method="seqlora", train={"lr": 1e-2})
    first = retain.run(config, quiet=True, stop_after=1)
    rows = _general(first.run_dir)["rows"]
    assert len(rows) == 2 and rows[1][2] != rows[0][2]
    specs = build_lm_eval_sets(config["stream"]["general"], config["stream"]["lm_eval_include_path"])
    assert type(first.model).__name__.startswith("Peft")
    first.model.eval()
    scores, _ = score_row(first.model, first.tokenizer, specs, 4, 7)
    assert scores == rows[1]
    written = (first.run_dir / "general" / "lm_eval_row1.json").stat().st_mtime_ns
    resumed = retain.run(str(first.run_dir), resume=True, quiet=True)
    after = _general(resumed.run_dir)["rows"]
    assert len(after) == 3 and after[:2] == rows
    assert (first.run_dir / "general" / "lm_eval_row1.json").stat().st_mtime_ns == written


# -- configuration ---------------------------------------------------------------------------


def _stream(general: Any, **keys: Any) -> StreamConfig:
    return StreamConfig(benchmark="demo", demo_tasks=1, demo_train_size=4, demo_eval_size=2, general=general, **keys)


def test_seekr_ga_preset_names_installed_lm_eval_tasks() -> None:
    """``general: seekr-ga`` is SEEKR's six benchmarks with their shot counts, each an lm-eval task
    this lm-eval knows (checked against its task index, no model run)."""
    stream = build_stream(_stream("seekr-ga"), 0)
    assert [(g.name, g.spec.task, g.spec.num_fewshot) for g in stream.general] == [
        ("MMLU", "mmlu", 5), ("GSM8K", "gsm8k_cot", 8), ("BBH", "bbh", 3), ("TydiQA", "tydiqa_goldp", 1),
        ("BoolQ", "boolq", 0), ("PIQA", "piqa", 0),
    ]
    assert len(PRESETS["seekr-ga"]) == 6
    small = build_stream(_stream([{"preset": "seekr-ga", "limit": 20, "batch_size": 2}]), 0)
    assert [(g.spec.limit, g.spec.batch_size, g.spec.num_fewshot) for g in small.general][:2] == [(20, 2, 5), (20, 2, 8)]


@pytest.mark.parametrize("general, message", [
    ([{"lm_eval": "no_such_task"}], "stream.general[0].lm_eval: unknown lm-eval task 'no_such_task': not among "
                                    "lm-eval's tasks (`lm-eval ls tasks`) (custom tasks: include_path)"),
    ([{"lm_eval": "tiny_mc", "shots": 5}], "stream.general[0].shots: unknown key"),
    ([{"lm_eval": "tiny_mc", "limit": 2.5}], "stream.general[0].limit: 2.5: a count must be a whole number"),
    ([{"lm_eval": "tiny_mc", "num_fewshot": -1}], "stream.general[0].num_fewshot"),
    (["seekr"], "stream.general[0]: unknown preset 'seekr'"),
    ([{"preset": "seekr-ga", "num_fewshot": 0}], "stream.general[0].num_fewshot: not a setting of a preset"),
    ([{"lm_eval": ""}], "stream.general[0].lm_eval: a task name is required"),
    ([{"lm_eval": "tiny_gen", "metric": "bleu"}], "stream.general[0].metric: 'bleu': lm-eval task 'tiny_gen' reports "
                                                  "ter, exact_match"),
    ([{"lm_eval": "tiny_mc", "metric": "acc,strict"}], "stream.general[0].metric: 'acc,strict': lm-eval task 'tiny_mc' "
                                                       "has no filter 'strict' (its filters: none)"),
])
def test_bad_lm_eval_entries_are_refused_naming_the_key(root: Path, general: Any, message: str) -> None:
    include = None if general[0] == {"lm_eval": "no_such_task"} else str(root / "tasks")  # lm-eval's own tasks
    with pytest.raises(ConfigError, match="^" + re.escape(message)):
        build_stream(_stream(general, lm_eval_include_path=include), 0)


def test_a_set_without_a_metric_records_its_tasks_first(root: Path) -> None:
    """No ``metric``: the first of the task's metric_list, under its first filter, known before
    any model runs (the dry run and the run header name it)."""
    stream = build_stream(_stream([{"lm_eval": "tiny_gen"}], lm_eval_include_path=str(root / "tasks")), 0)
    assert stream.general[0].metric == "lm-eval/ter,none"


def test_include_path_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^stream\.general\[0\]\.include_path: .* is not a folder"):
        build_stream(_stream([{"lm_eval": "tiny_mc", "include_path": str(tmp_path / "absent")}]), 0)


def test_missing_lm_eval_says_how_to_install(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install retain\[lm-eval\]"):
        build_stream(_stream([{"lm_eval": "tiny_mc"}], lm_eval_include_path=str(root / "tasks")), 0)


def test_two_sets_with_one_name_are_refused(root: Path) -> None:
    general = [{"lm_eval": "tiny_mc"}, {"lm_eval": "tiny_ppl", "name": "tiny_mc"}]
    with pytest.raises(ConfigError, match="two sets are named 'tiny_mc'"):
        build_stream(_stream(general, lm_eval_include_path=str(root / "tasks")), 0)


def test_a_classifier_model_is_refused_before_training(root: Path, tmp_path: Path) -> None:
    """lm-eval scores text a language model produces: a classifier run stops at row 0, before any
    training, with one line saying why (and leaves no run folder)."""
    config = {
        "name": "classifier", "output_dir": str(tmp_path), "model": {"name_or_path": "builtin:tiny-bert"},
        "stream": {"benchmark": "demo", "demo_tasks": 1, "demo_train_size": 4, "demo_eval_size": 2,
                   "general": [{"lm_eval": "tiny_mc", "limit": 2}], "lm_eval_include_path": str(root / "tasks")},
        "methods": ["seqft"],
    }
    with pytest.raises(ConfigError, match=r"^stream\.general: lm-eval sets \(tiny_mc\) score a language model; a classifier"):
        retain.run(config, quiet=True)
    assert not (tmp_path / "classifier").exists()
