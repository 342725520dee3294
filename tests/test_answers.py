"""Label sets and metrics from the answers' shape; the switch that turns label sets off; the run
header and the report naming each task's metric."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from retain.cli import main
from retain.config import StreamConfig
from retain.data.answers import answer_shape
from retain.data.benchmarks import build_stream
from retain.data.labels import infer_labels
from retain.data.types import Example
from tests.conftest import tiny_config
from tests.test_metrics import USER_METRIC

SUMMARIES = ["the council approved the new budget for the city park", "residents asked for more bus lines downtown",
             "the school board delayed the vote on the new calendar"]


def _examples(targets: list[str], prompt: str = "Summarize: ") -> list[Example]:
    return [Example(f"{prompt}{i}", t, f"k{i}") for i, t in enumerate(targets)]


def _write_trace(folder: Path, train: list[str], evaluation: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, answers in (("train", train), ("eval", evaluation)):
        records = [{"prompt": f"Meeting {i}: summarize.\n", "answer": a} for i, a in enumerate(answers)]
        (folder / f"{name}.json").write_text(json.dumps(records))
    return folder


def test_repeated_free_text_is_not_a_label_set() -> None:
    train = _examples(SUMMARIES * 4)
    evaluation = _examples(["the mayor opened the new library on main street", SUMMARIES[0]])
    assert infer_labels(train) == SUMMARIES  # the repeat test alone would call these labels
    shape = answer_shape(train, evaluation)
    assert shape.labels is None and shape.metric == "rouge_l"
    assert "free-text answers (answers longer than 5 words)" == shape.reason


def test_open_short_answers_and_numbers_keep_every_record() -> None:
    train = _examples(["Paris", "Rome", "Oslo"] * 4)
    shape = answer_shape(train, _examples(["Bern", "Lima", "Oslo"]))
    assert shape.labels is None and shape.metric == "rouge_l" and "2 of 3 evaluation answers" in shape.reason
    numbers = answer_shape(_examples(["1", "2", "3"] * 4), _examples(["1", "2"]))
    assert numbers.labels is None and numbers.metric == "accuracy" and numbers.reason.startswith("numeric answers")


def test_classes_stay_classes() -> None:
    train = _examples(["Sports", "World"] * 5, prompt="Option: Sports, World.\n")
    shape = answer_shape(train, _examples(["Sports", "-"], prompt="Option: Sports, World.\n"))
    assert shape.labels == ["Sports", "World"] and shape.metric == "accuracy"
    assert shape.reason == "label set of 2 inferred from the train answers"
    assert answer_shape(train, [], metric="bleu").labels is None
    assert answer_shape(train, [], declared=["World", "Sports"]).labels == ["World", "Sports"]
    stars = _examples(["1", "2", "3"] * 4)
    assert answer_shape(stars, _examples(["1", "7"])).labels is None
    assert answer_shape(stars, _examples(["1", "7"]), metric="accuracy").labels == ["1", "2", "3"]
    named = _examples(["1", "2", "3"] * 4, prompt="Option: 1, 2, 3.\n")
    assert answer_shape(named, _examples(["1", "7"])).labels == ["1", "2", "3"]


def test_switch_turns_label_sets_off_per_stream_and_per_task(tmp_path: Path) -> None:
    folder = tmp_path / "yesno"
    folder.mkdir()
    ask = "Option: yes, no.\n"
    train = [{"instruction": ask, "input": str(i), "output": ("yes", "no")[i % 2]} for i in range(12)]
    evaluation = [{"instruction": ask, "input": "x", "output": o} for o in ("yes", "no", "unsure")]
    (folder / "train.json").write_text(json.dumps(train))
    (folder / "dev.json").write_text(json.dumps(evaluation))
    task = {"name": "yesno", "train": str(folder / "train.json"), "eval": str(folder / "dev.json")}

    with pytest.warns(UserWarning, match="outside the label set"):
        (default,) = build_stream(StreamConfig(benchmark="custom", tasks=[task]), seed=0).tasks
    assert default.labels == ["yes", "no"] and len(default.eval) == 2 and default.metric == "accuracy"

    for config in (StreamConfig(benchmark="custom", tasks=[task], infer_labels=False),
                   StreamConfig(benchmark="custom", tasks=[{**task, "infer_labels": False}])):
        (built,) = build_stream(config, seed=0).tasks
        assert built.labels is None and len(built.eval) == 3 and built.skipped_records == 0
        assert built.metric == "rouge_l" and "label sets off" in built.metric_reason
    on_for_task = StreamConfig(benchmark="custom", tasks=[{**task, "infer_labels": True}], infer_labels=False)
    with pytest.warns(UserWarning, match="outside the label set"):
        assert build_stream(on_for_task, seed=0).tasks[0].labels == ["yes", "no"]


def test_run_header_and_report_name_each_tasks_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "my_metrics.py").write_text(USER_METRIC)
    monkeypatch.syspath_prepend(str(tmp_path))
    meetings = _write_trace(tmp_path / "meetings", SUMMARIES * 4, SUMMARIES[:2])
    lengths = _write_trace(tmp_path / "lengths", SUMMARIES * 2, SUMMARIES[1:])
    config = tiny_config(
        tmp_path,
        stream={"benchmark": "custom", "tasks": [
            {"format": "trace", "path": str(meetings)},
            {"format": "trace", "path": str(lengths), "metric": "my_metrics:LengthRatio"},
        ]},
        eval={"max_new_tokens": 4},
    )
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["run", str(path), "--quiet"]) == 0
    run_dir = tmp_path / "runs" / "run"
    log = (run_dir / "run.log").read_text()
    assert "task meetings: ROUGE-L (rouge_l, higher is better): free-text answers (answers longer than 5 words)" in log
    assert "task lengths: Length ratio (my_metrics:LengthRatio, lower is better): set in the task spec" in log
    matrix = json.loads((run_dir / "matrix.json").read_text())
    assert matrix["task_metrics"] == ["rouge_l", "my_metrics:LengthRatio"]
    assert matrix["higher_is_better"] == [True, False]
    report = (run_dir / "report.md").read_text()
    assert "## Scoring" in report and "| meetings | task | ROUGE-L | higher is better |" in report
    assert "| lengths | task | Length ratio | lower is better |" in report
