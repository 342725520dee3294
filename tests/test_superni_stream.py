"""The SuperNI stream: SEEKR's and KIF's orders over the natural-instructions task files, each task
split by the run seed (test first, disjoint from train, at most 1000 / 100) and scored as its
paper scores it; refused clearly when a task file is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import pytest

import retain
from retain.cli import main
from retain.config import StreamConfig, make_config
from retain.data.benchmarks import BENCHMARK_ORDERS, BENCHMARKS, build_stream
from retain.data.superni_stream import ACCURACY_TASKS, ORDER_PAPERS, split_instances
from retain.data.types import Example
from retain.errors import ConfigError, DataError
from tests.conftest import tiny_config

SST2 = "task363_sst2_polarity_classification"
SAMSUM = "task1572_samsum_summary"
ALL_TASKS = sorted({name for order in BENCHMARK_ORDERS["superni"].values() for name in order})


def write_superni_layout(root: Path, tasks: tuple[str, ...] = tuple(ALL_TASKS), instances: int = 12,
                         sizes: Optional[dict[str, int]] = None) -> Path:
    """natural-instructions' layout: <root>/tasks/<task>.json, one task object per file."""
    (root / "tasks").mkdir(parents=True)
    for name in tasks:
        count = (sizes or {}).get(name, instances)
        label = name in ACCURACY_TASKS
        task = {
            "Definition": [f"Answer the {name} question."],
            "Positive Examples": [{"input": "a good film", "output": "POS" if label else "a film"}],
            "Negative Examples": [],
            "Instances": [
                {"id": f"{name.split('_')[0]}-{i}", "input": f"sentence {i}",
                 "output": [("POS", "NEG")[i % 2] if label else f"summary of sentence {i}"]}
                for i in range(count)
            ],
        }
        (root / "tasks" / f"{name}.json").write_text(json.dumps(task), encoding="utf-8")
    return root


# ---------------------------------------------------------------------------------------------
# The orders.


def test_superni_is_listed_with_its_orders() -> None:
    assert "superni" in BENCHMARKS and "orders 9-10" in BENCHMARKS["superni"]
    orders = BENCHMARK_ORDERS["superni"]
    assert orders[9][:3] == (SAMSUM, SST2, "task1290_xsum_summarization")
    assert orders[9][-2:] == ("task195_sentiment140_classification", "task875_emotion_classification")
    assert orders[10][:3] == ("task748_glucose_reverse_cause_event_detection", "task073_commonsenseqa_answer_generation", SAMSUM)
    assert orders[11][6:8] == ("task639_multi_woz_user_utterance_generation", "task1729_personachat_generate_next")
    assert orders[12][:4] == ("task748_glucose_reverse_cause_event_detection", "task073_commonsenseqa_answer_generation",
                              "task1590_diplomacy_text_generation", "task639_multi_woz_user_utterance_generation")
    assert [len(orders[o]) for o in (9, 10, 11, 12)] == [12, 12, 15, 15]
    assert set(orders[9]) == set(orders[10]) and set(orders[11]) == set(orders[12])
    assert all(o[-1] == "task875_emotion_classification" for o in orders.values())
    assert {o: paper for o, (paper, _) in ORDER_PAPERS.items()} == {9: "SEEKR", 10: "SEEKR", 11: "KIF", 12: "KIF"}
    # an order number names one sequence in every benchmark
    numbers = [o for b in BENCHMARK_ORDERS.values() for o in b]
    assert len(numbers) == len(set(numbers))


@pytest.mark.parametrize("order", [9, 10, 11, 12])
def test_superni_stream_in_each_order(tmp_path: Path, order: int) -> None:
    root = write_superni_layout(tmp_path / "natural-instructions")
    stream = build_stream(StreamConfig(benchmark="superni", data_root=str(root), order=order), seed=0)
    assert stream.name == f"superni-order{order}"
    assert stream.task_names == list(BENCHMARK_ORDERS["superni"][order])
    seekr = order in (9, 10)
    for task in stream.tasks:
        accuracy = task.name in ACCURACY_TASKS
        if seekr:
            assert task.metric == ("accuracy_trace" if accuracy else "rouge_l_trace"), task.name
            assert task.answer_processing == "trace_answer" and task.published_epochs == 10.0
            assert task.metric_reason.startswith(f"SEEKR scores {task.name} by")
        else:
            assert task.metric == ("accuracy" if accuracy else "rouge_l"), task.name
            assert task.answer_processing == "" and task.published_epochs is None
            assert task.metric_reason.startswith(f"KIF scores {task.name} by")
        assert ("exact match" if accuracy else "ROUGE-L") in task.metric_reason
        assert task.labels is None  # every instance scored from the generated text, as in the papers
        assert (len(task.train), len(task.eval)) == (8, 2)  # 12 instances: test and dev 2 each
        assert task.train[0].prompt.startswith(f"Definition: Answer the {task.name} question.")
    accuracy_tasks = {t.name for t in stream.tasks if t.metric.startswith("accuracy")}
    assert accuracy_tasks == ACCURACY_TASKS & set(stream.task_names)
    assert len(accuracy_tasks) == (3 if seekr else 2)  # task195 is in SEEKR's orders only


# ---------------------------------------------------------------------------------------------
# Sampling.


def _split(root: Path, seed: int, split: str = "test", **caps: int) -> tuple[list[str], list[str]]:
    config = StreamConfig(benchmark="superni", data_root=str(root), order=11, tasks=[SST2], eval_split=split, **caps)
    (task,) = build_stream(config, seed=seed).tasks
    return [e.key for e in task.train], [e.key for e in task.eval]


def test_split_is_seeded_disjoint_and_of_the_papers_sizes(tmp_path: Path) -> None:
    root = write_superni_layout(tmp_path / "ni", tasks=(SST2,), instances=1200)
    train, test = _split(root, seed=0)
    assert (len(train), len(test)) == (1000, 100)
    _, dev = _split(root, seed=0, split="dev")
    assert len(dev) == 100 and not set(dev) & set(test) and not set(dev) & set(train)
    assert not set(train) & set(test)
    assert _split(root, seed=0) == (train, test)  # same seed, same split
    other_train, other_test = _split(root, seed=1)
    assert other_test != test and other_train != train
    # the caps take a further seeded sample of each part
    capped_train, capped_test = _split(root, seed=0, max_train_per_task=50, max_eval_per_task=10)
    assert (len(capped_train), len(capped_test)) == (50, 10)
    assert set(capped_train) <= set(train) and set(capped_test) <= set(test)


def test_split_of_a_small_task_takes_a_tenth_for_test_and_dev() -> None:
    examples = [Example(f"p{i}", f"t{i}", key=str(i)) for i in range(200)]
    parts = split_instances(examples, 3, SAMSUM)
    assert {name: len(part) for name, part in parts.items()} == {"test": 20, "dev": 20, "train": 160}
    keys = [e.key for part in parts.values() for e in part]
    assert len(set(keys)) == 200
    assert [int(e.key) for e in parts["train"]] == sorted(int(e.key) for e in parts["train"])  # file order kept
    assert {n: len(p) for n, p in split_instances(examples[:3], 0, SAMSUM).items()} == {"test": 1, "dev": 1, "train": 1}


# ---------------------------------------------------------------------------------------------
# Refusals.


def test_missing_task_files_are_named_in_one_error(tmp_path: Path) -> None:
    present = tuple(t for t in BENCHMARK_ORDERS["superni"][9] if t not in (SAMSUM, "task195_sentiment140_classification"))
    root = write_superni_layout(tmp_path / "ni", tasks=present)
    with pytest.raises(ConfigError) as caught:
        build_stream(StreamConfig(benchmark="superni", data_root=str(root), order=9), seed=0)
    assert str(caught.value).startswith(
        f"stream.data_root: {root} has no task file tasks/{SAMSUM}.json, tasks/task195_sentiment140_classification.json"
    )
    with pytest.raises(ConfigError, match="stream.data_root: required for benchmark superni"):
        build_stream(StreamConfig(benchmark="superni", order=9), seed=0)
    with pytest.raises(ConfigError, match=r"stream.order: 7 is not an order of superni \(orders: 9, 10, 11, 12\)"):
        build_stream(StreamConfig(benchmark="superni", data_root=str(root), order=7), seed=0)
    with pytest.raises(ConfigError, match=r"stream.tasks\[0\]: 'task1_nope' is not a task of superni"):
        build_stream(StreamConfig(benchmark="superni", data_root=str(root), tasks=["task1_nope"]), seed=0)
    with pytest.raises(ConfigError, match=r"stream.order: must be in \[9, 12\], got 8"):
        make_config(tiny_config(tmp_path, stream={"benchmark": "superni", "data_root": str(root), "order": 8}))
    with pytest.raises(ConfigError, match=r"stream.order: must be in \[7, 8\], got 9"):
        make_config(tiny_config(tmp_path, stream={"benchmark": "trace", "data_root": str(root), "order": 9}))


def test_a_bad_task_file_is_named(tmp_path: Path) -> None:
    root = write_superni_layout(tmp_path / "ni", tasks=(SST2,))
    path = root / "tasks" / f"{SST2}.json"
    config = StreamConfig(benchmark="superni", data_root=str(root), order=11, tasks=[SST2])
    path.write_text('{"Definition": ["x"], ', encoding="utf-8")
    with pytest.raises(DataError, match=rf"{SST2}\.json: not valid JSON \(line 1"):
        build_stream(config, seed=0)
    path.write_text(json.dumps({"Definition": ["x"], "Positive Examples": []}), encoding="utf-8")
    with pytest.raises(DataError, match=rf"{SST2}\.json: missing field 'Instances'"):
        build_stream(config, seed=0)


# ---------------------------------------------------------------------------------------------
# The command line, the shipped config and a tiny run.


def test_list_shows_superni(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "superni" in out and "orders 9-10" in out and "11-12" in out


def test_shipped_kif_superni_config_copies_and_dry_runs(tmp_path: Path) -> None:
    root = write_superni_layout(tmp_path / "ni")
    (copied,) = retain.init("kif-superni", tmp_path / "cfg")
    assert len(copied.read_text().splitlines()) <= 15
    text = retain.dry_run(copied, [f"stream.data_root={root}", "model.name_or_path=builtin:tiny-llama"])
    assert "stream: superni-order11, order 11, 15 tasks, eval split test" in text
    assert f"{SST2}: accuracy because KIF scores {SST2} by exact match" in text
    assert f"{SAMSUM}: rouge_l because KIF scores {SAMSUM} by ROUGE-L" in text
    assert "kif:" in text
    config = make_config(copied, [f"stream.data_root={root}"])
    assert config.model.lora.enabled and config.model.lora.target_modules == ["q_proj", "v_proj"]
    assert (config.train.epochs, config.train.batch_size * config.train.grad_accum, config.train.lr) == (10, 64, 3e-4)


def test_tiny_kif_run_on_two_superni_tasks(tmp_path: Path) -> None:
    root = write_superni_layout(tmp_path / "ni", tasks=(SAMSUM, SST2))
    config = tiny_config(
        tmp_path, name="superni-cut", methods=["kif"],
        stream={"benchmark": "superni", "data_root": str(root), "order": 11, "tasks": [SAMSUM, SST2],
                "max_train_per_task": 4, "max_source_length": 64, "max_target_length": 8},
        train={"epochs": 1, "batch_size": 2},
        eval={"batch_size": 4, "max_new_tokens": 4},
    )
    for key in ("demo_tasks", "demo_train_size", "demo_eval_size"):
        config["stream"].pop(key)
    config["model"]["lora"] = {"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0}
    run_dir = retain.run(config, quiet=True).run_dir
    matrix = json.loads((run_dir / "matrix.json").read_text())
    assert matrix["task_metrics"] == ["rouge_l", "accuracy"] and len(matrix["rows"]) == 3
    log = (run_dir / "run.log").read_text()
    assert f"task {SAMSUM}: ROUGE-L (rouge_l, higher is better): KIF scores {SAMSUM} by ROUGE-L" in log
    assert f"task {SST2}: Accuracy (accuracy, higher is better): KIF scores {SST2} by exact match" in log
    report = (run_dir / "report.md").read_text()
    scoring = report[report.index("Scoring"):].splitlines()
    assert any(SAMSUM in line and "ROUGE-L" in line for line in scoring)
    assert any(SST2 in line and "Accuracy" in line for line in scoring)
