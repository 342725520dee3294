"""The TRACE stream: SEEKR's orders over TRACE's task folders, each task scored as TRACE scores it
(metric and answer post-processing), refused clearly when a task folder is missing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import retain
from retain.config import StreamConfig, make_config
from retain.data.benchmarks import BENCHMARK_ORDERS, BENCHMARKS, TRACE_EPOCHS, TRACE_TASKS, build_stream
from retain.data.types import Example, Task
from retain.errors import ConfigError
from retain.evaluation.answer_processing import (
    ANSWER_PROCESSORS,
    get_answer_processor,
    trace_first_char,
    trace_short_answer,
)
from retain.evaluation.scoring import TaskScore, _post_process, merge_shares
from retain.reporting.scoring import scoring_lines
from tests.conftest import tiny_config

TASKS = ("C-STANCE", "FOMC", "MeetingBank", "Py150", "ScienceQA", "NumGLUE-cm", "NumGLUE-ds", "20Minuten")

#: a few records per task, shaped like TRACE's (prompt / answer)
RECORDS = {
    "C-STANCE": [("Text: a. Stance? A, B or C.\nAnswer:", "A"), ("Text: b. Stance? A, B or C.\nAnswer:", "B")],
    "FOMC": [("Sentence: rates up. Hawkish (A), dovish (B) or neutral (C)?\nAnswer:", "A"),
             ("Sentence: rates down. Hawkish (A), dovish (B) or neutral (C)?\nAnswer:", "B")],
    "MeetingBank": [("Summarise: the council met and voted.\nAnswer:", "the council voted"),
                    ("Summarise: the board met and agreed.\nAnswer:", "the board agreed")],
    "Py150": [("Complete: def f ( x ) :\nAnswer:", "return x + <NUM_LIT>"),
              ("Complete: import os\nAnswer:", "print ( <STR_LIT:hi> )")],
    "ScienceQA": [("Question: which is hot? A. sun B. ice\nAnswer:", "A"),
                  ("Question: which is cold? A. sun B. ice\nAnswer:", "B")],
    "NumGLUE-cm": [("2 plus 3?\nAnswer:", "5"), ("4 plus 4?\nAnswer:", "8")],
    "NumGLUE-ds": [("Tom has 3 and gets 2. How many?\nAnswer:", "5"), ("6 minus 1?\nAnswer:", "5")],
    "20Minuten": [("Simplify: Der Rat hat heute entschieden.\nAnswer:", "Der Rat entschied."),
                  ("Simplify: Die Stadt baut eine Brücke.\nAnswer:", "Die Stadt baut.")],
}


def write_trace_layout(root: Path, tasks: tuple[str, ...] = TASKS) -> Path:
    """TRACE's published layout: <root>/<task>/{train,eval,test}.json, each a list of records."""
    for name in tasks:
        folder = root / name
        folder.mkdir(parents=True)
        records = [{"prompt": p, "answer": a} for p, a in RECORDS[name]]
        for split in ("train", "eval", "test"):
            (folder / f"{split}.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------------
# The answer post-processing rules, by hand.


def test_short_answer_rules() -> None:
    # the text after the first "\nAnswer:" marker, up to a second one
    assert trace_short_answer("Let me think.\nAnswer: B\n") == "B"
    assert trace_short_answer("x\nAnswer: 5\nAnswer: 6") == "5"
    # full-width colon counts as ':'; the Chinese markers too
    assert trace_short_answer("想一想\nAnswer： C") == "C"
    assert trace_short_answer("推理\n答案: 42") == "42"
    assert trace_short_answer("推理\n回答:是") == "是"
    # "\nReasoning:" comes after the answer and wins over "\nAnswer:"
    assert trace_short_answer("return x\nReasoning: adds\nAnswer: no") == "return x"
    # no marker: the whole text, stripped; nothing left: one space (never equal to a target)
    assert trace_short_answer("  the council voted  ") == "the council voted"
    assert trace_short_answer("\nAnswer:   ") == " "
    assert trace_short_answer("") == " "


def test_first_character_rules() -> None:
    assert trace_first_char("B) dovish") == "B"
    assert trace_first_char("reasoning\nAnswer: C because") == "C"
    assert trace_first_char("") == " "
    letter = get_answer_processor("trace_choice_letter")
    assert letter is not None
    assert letter.answer("A\nBecause the sun is hot.") == "A"
    assert letter.target("A\nBecause the sun is hot.") == "A"
    assert letter.target("") == " "
    # the other rules leave the target as it is
    assert ANSWER_PROCESSORS["trace_first_char"].target("A\nBecause") == "A\nBecause"
    assert ANSWER_PROCESSORS["trace_answer"].target("x\nAnswer: y") == "x\nAnswer: y"


def test_no_processor_and_unknown_processor() -> None:
    assert get_answer_processor("") is None and get_answer_processor(None) is None
    with pytest.raises(ConfigError, match=r"unknown processor 'nope' \(known: trace_answer"):
        get_answer_processor("nope")


def test_scoring_hook_only_for_tasks_that_name_a_processor() -> None:
    plain = Task("plain", [], [Example("p", "A")])
    assert _post_process(plain, "generate", ["A\nAnswer: B"], ["A"]) == (None, ["A\nAnswer: B"], ["A"])
    science = Task("ScienceQA", [], [], answer_processing="trace_choice_letter")
    assert _post_process(science, "generate", ["why\nAnswer: B so"], ["B\nBecause"]) == (
        ["why\nAnswer: B so"], ["B"], ["B"]
    )
    assert _post_process(science, "rank", ["B"], ["B\nBecause"]) == (None, ["B"], ["B\nBecause"])  # labels as they are
    # shares merged: the metric sees the targets as scored
    record = {"key": "k", "prompt": "p", "target": "B\nBecause", "scored_target": "B", "prediction": "B", "score": 1.0}
    merged = merge_shares([([0], TaskScore(100.0, [record]))], 1, 1.0, "accuracy")
    assert merged.score == 100.0 and merged.predictions == [record]


# ---------------------------------------------------------------------------------------------
# The stream.


def test_trace_is_listed_with_its_orders_and_epochs() -> None:
    assert "trace" in BENCHMARKS
    assert BENCHMARK_ORDERS["trace"][7] == TASKS
    assert BENCHMARK_ORDERS["trace"][8] == (
        "NumGLUE-cm", "NumGLUE-ds", "FOMC", "20Minuten", "C-STANCE", "Py150", "MeetingBank", "ScienceQA"
    )
    assert {len(o) for o in BENCHMARK_ORDERS["trace"].values()} == {8}
    assert all(set(o) == set(TASKS) for o in BENCHMARK_ORDERS["trace"].values())
    assert TRACE_EPOCHS == {7: (5, 5, 5, 5, 5, 5, 10, 5), 8: (10, 10, 10, 5, 5, 5, 5, 5)}
    # the other benchmarks' orders are untouched and do not share a number with trace's
    assert not set(BENCHMARK_ORDERS["trace"]) & {o for b in ("standard-cl", "long-sequence") for o in BENCHMARK_ORDERS[b]}


EXPECTED = {
    "C-STANCE": ("accuracy_trace", "trace_first_char"),
    "FOMC": ("accuracy_trace", "trace_first_char"),
    "MeetingBank": ("rouge_l_trace", "trace_answer"),
    "Py150": ("edit_sim_trace", "trace_answer"),
    "ScienceQA": ("accuracy_trace", "trace_choice_letter"),
    "NumGLUE-cm": ("accuracy_trace", "trace_answer"),
    "NumGLUE-ds": ("accuracy_trace", "trace_answer"),
    "20Minuten": ("sari_trace", "trace_answer"),
}


@pytest.mark.parametrize("order", [7, 8])
def test_trace_stream_in_each_order(tmp_path: Path, order: int) -> None:
    root = write_trace_layout(tmp_path / "TRACE")
    stream = build_stream(StreamConfig(benchmark="trace", data_root=str(root), order=order), seed=0)
    assert stream.name == f"trace-order{order}"
    assert stream.task_names == list(BENCHMARK_ORDERS["trace"][order])
    for task in stream.tasks:
        assert (task.metric, task.answer_processing) == EXPECTED[task.name], task.name
        assert task.labels is None  # every record scored, as in TRACE
        assert len(task.train) == 2 and len(task.eval) == 2
        assert task.train[0].target == RECORDS[task.name][0][1]
    assert {name: (t.metric, t.answer_processing) for name, t in TRACE_TASKS.items()} == EXPECTED
    lines = scoring_lines(stream)
    assert any(line.startswith("task C-STANCE: Accuracy (TRACE) (accuracy_trace, higher is better)") and
               line.endswith("; answers post-processed by trace_first_char") for line in lines)
    assert any("task Py150: Edit similarity (TRACE)" in line and "trace_answer" in line for line in lines)


def test_trace_default_order_and_eval_split(tmp_path: Path) -> None:
    root = write_trace_layout(tmp_path / "TRACE")
    (root / "FOMC" / "test.json").write_text(json.dumps([{"prompt": "p\nAnswer:", "answer": "C"}]))
    config = StreamConfig(benchmark="trace", data_root=str(root), eval_split="test", tasks=["FOMC"])
    stream = build_stream(config, seed=0)
    assert stream.name == "trace-order7" and [ex.target for ex in stream.tasks[0].eval] == ["C"]


def test_missing_task_folders_are_named_in_one_error(tmp_path: Path) -> None:
    root = write_trace_layout(tmp_path / "TRACE", tasks=tuple(t for t in TASKS if t not in ("Py150", "20Minuten")))
    with pytest.raises(ConfigError) as caught:
        build_stream(StreamConfig(benchmark="trace", data_root=str(root), order=7), seed=0)
    message = str(caught.value)
    assert message.startswith(f"stream.data_root: {root} has no task folder Py150/, 20Minuten/")
    with pytest.raises(ConfigError, match="stream.data_root: required for benchmark trace"):
        build_stream(StreamConfig(benchmark="trace", order=7), seed=0)
    with pytest.raises(ConfigError, match=r"stream.order: 1 is not an order of trace \(orders: 7, 8\)"):
        build_stream(StreamConfig(benchmark="trace", data_root=str(root), order=1), seed=0)


def test_order_range_depends_on_the_benchmark(tmp_path: Path) -> None:
    root = str(write_trace_layout(tmp_path / "TRACE"))
    assert make_config(tiny_config(tmp_path, stream={"benchmark": "trace", "data_root": root, "order": 8})).stream.order == 8
    with pytest.raises(ConfigError, match=r"stream.order: must be in \[7, 8\], got 3"):
        make_config(tiny_config(tmp_path, stream={"benchmark": "trace", "data_root": root, "order": 3}))
    with pytest.raises(ConfigError, match=r"stream.order: must be in \[1, 6\], got 7"):
        make_config(tiny_config(tmp_path, stream={"benchmark": "standard-cl", "data_root": root, "order": 7}))


# ---------------------------------------------------------------------------------------------
# A tiny run on a 2-task cut.


def test_tiny_run_on_two_trace_tasks(tmp_path: Path) -> None:
    root = write_trace_layout(tmp_path / "TRACE", tasks=("FOMC", "NumGLUE-cm"))
    config = tiny_config(
        tmp_path, name="trace-cut",
        stream={"benchmark": "trace", "data_root": str(root), "order": 8, "tasks": ["NumGLUE-cm", "FOMC"],
                "max_train_per_task": 2, "max_source_length": 64, "max_target_length": 8},
        train={"epochs": 2, "batch_size": 2},
        eval={"batch_size": 4, "max_new_tokens": 4},
    )
    for key in ("demo_tasks", "demo_train_size", "demo_eval_size"):
        config["stream"].pop(key)
    result = retain.run(config, quiet=True)
    run_dir = result.run_dir
    matrix = json.loads((run_dir / "matrix.json").read_text())
    assert matrix["task_metrics"] == ["accuracy_trace", "accuracy_trace"] and len(matrix["rows"]) == 3
    log = (run_dir / "run.log").read_text()
    assert "task NumGLUE-cm: Accuracy (TRACE) (accuracy_trace, higher is better): TRACE scores NumGLUE-cm so (eval_NumGLUE_cm.py, re_eval.py); answers post-processed by trace_answer" in log
    assert "; answers post-processed by trace_answer" in log
    assert "task FOMC: Accuracy (TRACE) (accuracy_trace, higher is better)" in log and "post-processed by trace_first_char" in log
    assert matrix["task_answer_processing"] == ["trace_answer", "trace_first_char"]
    report = (run_dir / "report.md").read_text()
    scoring = report[report.index("Scoring"):]
    assert "answer post-processing" in scoring.splitlines()[2]  # the table's header
    assert any("FOMC" in line and "trace_first_char" in line for line in scoring.splitlines())
    assert any("NumGLUE-cm" in line and "trace_answer" in line for line in scoring.splitlines())
    records = [json.loads(line) for path in sorted((run_dir / "predictions").glob("*FOMC*.jsonl"))
               for line in path.read_text().splitlines()]
    assert records
    for record in records:  # the scored answer is the first character of what was generated
        assert record["prediction"] == trace_first_char(record["generated"])
        assert record["score"] == float(record["prediction"] == record["target"])  # exactly, as TRACE


def test_shipped_seekr_trace_config_copies_and_dry_runs(tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")  # the config's general: seekr-ga is scored through lm-eval
    root = write_trace_layout(tmp_path / "TRACE")
    (copied,) = retain.init("seekr-trace", tmp_path / "cfg")
    assert len(copied.read_text().splitlines()) <= 15
    text = retain.dry_run(copied, [f"stream.data_root={root}", "model.name_or_path=builtin:tiny-llama"])
    assert "stream: trace-order7, order 7, 8 tasks, eval split test" in text
    assert "; answers post-processed by trace_first_char" in text and "; answers post-processed by trace_answer" in text
    assert "seekr(ratio=0.01, w_ad=1000.0, layer_budget=0.75, head_budget=0.125, query_budget=0)" in text
    # SEEKR's Table 2 in the same config: the six general-ability benchmarks through lm-eval
    for name, metric in (("MMLU", "acc"), ("GSM8K", "exact_match,flexible-extract"), ("BBH", "exact_match,get-answer"),
                         ("TydiQA", "f1"), ("BoolQ", "acc"), ("PIQA", "acc")):
        assert re.search(rf"general: {name} +lm-eval/{metric} ", text)
    assert "epochs per task (train.task_epochs): C-STANCE 5, FOMC 5, MeetingBank 5, Py150 5, ScienceQA 5, NumGLUE-cm 5, NumGLUE-ds 10, 20Minuten 5" in text
    config = make_config(copied, [f"stream.data_root={root}"])
    assert (config.stream.max_source_length, config.stream.max_target_length, config.eval.max_new_tokens) == (1024, 512, 512)


def test_seekr_on_trace_with_general_sets_reaches_a_report_naming_each_task_s_scoring(tmp_path: Path) -> None:
    """SEEKR's protocol end to end on a 2-task cut of TRACE: replay, attention distillation, SEEKR's
    epochs per task, a held-out general set scored before training and after every task."""
    root = write_trace_layout(tmp_path / "TRACE", tasks=("C-STANCE", "MeetingBank"))
    general = tmp_path / "general.json"
    general.write_text(json.dumps([{"instruction": f"Repeat: {w}", "input": "", "output": w}
                                   for w in ("sun", "rain", "snow", "wind")]), encoding="utf-8")
    config = tiny_config(
        tmp_path, name="seekr-trace-cut",
        methods=[{"name": "seekr", "ratio": 0.5, "w_ad": 1000.0, "layer_budget": 0.75, "head_budget": 0.125,
                  "query_budget": 0}],
        stream={"benchmark": "trace", "data_root": str(root), "order": 7, "tasks": ["C-STANCE", "MeetingBank"],
                "max_source_length": 64, "max_target_length": 8,
                "general": [{"name": "repeat", "format": "alpaca", "eval": str(general), "infer_labels": False}]},
        train={"task_epochs": "published", "batch_size": 2},
        eval={"batch_size": 4, "max_new_tokens": 4},
    )
    for key in ("demo_tasks", "demo_train_size", "demo_eval_size"):
        config["stream"].pop(key)
    result = retain.run(config, quiet=True)
    run_dir = result.run_dir
    log = (run_dir / "run.log").read_text()
    # order 7 trains C-STANCE for 5 epochs: 2 examples in batches of 2, 5 passes (task 2 adds replay)
    assert re.findall(r"phase \d/2 \S+: (\d+) micro-batches", log)[0] == "5"
    general_scores = json.loads((run_dir / "general.json").read_text())
    assert general_scores["names"] == ["repeat"] and len(general_scores["rows"]) == 3
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["general_delta"]["value"] is not None
    report = (run_dir / "report.md").read_text()
    scoring = report[report.index("Scoring"):].splitlines()
    assert any("C-STANCE" in line and "Accuracy (TRACE)" in line and "trace_first_char" in line for line in scoring)
    assert any("MeetingBank" in line and "ROUGE-L (TRACE)" in line and "trace_answer" in line for line in scoring)
    assert any("repeat" in line and "general set" in line for line in scoring)
    assert "**methods**: seekr(" in report and "general.png" in report
