"""train.task_epochs: one epochs value per task (SEEKR's TRACE scripts train some tasks longer),
or the benchmark's published schedule; a list that does not fit the stream is refused up front."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import retain
from retain.config import StreamConfig, TrainConfig
from retain.data.benchmarks import BENCHMARK_ORDERS, TRACE_EPOCHS, build_stream
from retain.data.types import Example, Stream, Task
from retain.engine.task_epochs import phase_epochs, resolve_task_epochs
from retain.errors import ConfigError
from tests.conftest import tiny_config
from tests.test_trace_stream import write_trace_layout


def _stream(*names: str, published: tuple[float | None, ...] = ()) -> Stream:
    tasks = [Task(name, [Example("p", "t")], [Example("p", "t")]) for name in names]
    for task, epochs in zip(tasks, published):
        task.published_epochs = epochs
    return Stream("s", tasks)


def test_default_is_train_epochs_for_every_task() -> None:
    assert resolve_task_epochs(TrainConfig(epochs=3), _stream("a", "b")) == [3.0, 3.0]


def test_a_list_gives_each_task_its_value_and_must_fit_the_stream() -> None:
    assert resolve_task_epochs(TrainConfig(task_epochs=[1, 2.5]), _stream("a", "b")) == [1.0, 2.5]
    with pytest.raises(ConfigError, match=r"train\.task_epochs: 3 values for the 2 tasks of s \(one per task, in stream order: a, b\)"):
        resolve_task_epochs(TrainConfig(task_epochs=[1, 2, 3]), _stream("a", "b"))
    with pytest.raises(ConfigError, match=r"train\.task_epochs\[1\]: 0 must be > 0 \(epochs of task b\)"):
        resolve_task_epochs(TrainConfig(task_epochs=[1, 0]), _stream("a", "b"))
    with pytest.raises(ConfigError, match=r"train\.task_epochs: 'longest' is not a list of epochs or 'published'"):
        resolve_task_epochs(TrainConfig(task_epochs="longest"), _stream("a"))


def test_published_needs_a_benchmark_that_publishes_them() -> None:
    assert resolve_task_epochs(TrainConfig(task_epochs="published"), _stream("a", "b", published=(5, 10))) == [5.0, 10.0]
    with pytest.raises(ConfigError, match=r"no published epochs for b \(trace and SEEKR's superni"):
        resolve_task_epochs(TrainConfig(task_epochs="published"), _stream("a", "b", published=(5, None)))


@pytest.mark.parametrize("order", [7, 8])
def test_trace_publishes_seekr_epochs_per_order_and_a_cut_keeps_them(tmp_path: Path, order: int) -> None:
    root = write_trace_layout(tmp_path / "TRACE")
    stream = build_stream(StreamConfig(benchmark="trace", order=order, data_root=str(root)), seed=1)
    assert resolve_task_epochs(TrainConfig(task_epochs="published"), stream) == [float(e) for e in TRACE_EPOCHS[order]]
    # NumGLUE-ds is 10 epochs in both orders, NumGLUE-cm 5 in order 7 and 10 in order 8
    cut = build_stream(StreamConfig(benchmark="trace", order=order, data_root=str(root),
                                    tasks=["NumGLUE-ds", "NumGLUE-cm"]), seed=1)
    expected = [TRACE_EPOCHS[order][BENCHMARK_ORDERS["trace"][order].index(n)] for n in ("NumGLUE-ds", "NumGLUE-cm")]
    assert resolve_task_epochs(TrainConfig(task_epochs="published"), cut) == [float(e) for e in expected]
    assert expected == ([10, 5] if order == 7 else [10, 10])


def test_a_phase_over_several_tasks_needs_equal_epochs() -> None:
    assert phase_epochs([2.0, 2.0], [0, 1], "all tasks") == 2.0
    with pytest.raises(ConfigError, match=r"phase 'all tasks' trains 2 tasks together, which cannot take different epochs \(1, 2\)"):
        phase_epochs([1.0, 2.0], [0, 1], "all tasks")


def test_a_run_trains_each_task_for_its_epochs(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, train={"task_epochs": [1, 2], "batch_size": 8}, stream={"demo_train_size": 16})
    result = retain.run(config, quiet=True)
    log = (result.run_dir / "run.log").read_text()
    counts = [int(n) for n in re.findall(r"phase \d/2 \S+: (\d+) micro-batches", log)]
    assert counts == [2, 4]  # 16 examples in batches of 8: 1 epoch, then 2


def test_refused_before_any_model_is_loaded_and_shown_by_the_dry_run(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, train={"task_epochs": [1, 2, 3]})
    with pytest.raises(ConfigError, match=r"train\.task_epochs: 3 values for the 2 tasks"):
        retain.run(config, quiet=True)
    assert not (tmp_path / "runs").exists()
    text = retain.dry_run(tiny_config(tmp_path, train={"task_epochs": [1, 2]}))
    assert re.search(r"epochs per task \(train\.task_epochs\): \S+ 1, \S+ 2", text)


def test_multitask_with_unequal_epochs_is_refused(tmp_path: Path) -> None:
    config = tiny_config(tmp_path, methods=["mtl"], train={"task_epochs": [1, 2]})
    with pytest.raises(ConfigError, match=r"train\.task_epochs: phase 'all tasks' trains 2 tasks together"):
        retain.run(config, quiet=True)
