"""The stream registry: from a :class:`StreamConfig` to a :class:`Stream` of tasks.

The benchmark orders are those the continual-learning literature reports results on, so that a
run here is comparable with published tables. Reading, label inference, unknown-label filtering
and seeded caps happen in one place, in a fixed sequence, so every stream is built the same way.
"""

from __future__ import annotations

import contextlib
import logging
import random
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from retain.config import DataSourceConfig, StreamConfig, build_dataclass
from retain.data.answers import answer_shape
from retain.data.data_root import benchmark_folder
from retain.data.labels import filter_unknown_labels
from retain.data.readers import ReadResult, read_alpaca, read_source, read_trace
from retain.data.types import Example, Stream, Task
from retain.evaluation.metrics import check_metric
from retain.errors import ConfigError, DataError

#: benchmark -> order number -> task names (train on the first, then the second, ...).
BENCHMARK_ORDERS: dict[str, dict[int, tuple[str, ...]]] = {
    "standard-cl": {
        1: ("dbpedia", "amazon", "yahoo", "agnews"),
        2: ("dbpedia", "amazon", "agnews", "yahoo"),
        3: ("yahoo", "amazon", "agnews", "dbpedia"),
    },
    "long-sequence": {
        4: ("mnli", "cb", "wic", "copa", "qqp", "boolqa", "rte", "imdb", "yelp", "amazon", "sst-2",
            "dbpedia", "agnews", "multirc", "yahoo"),
        5: ("multirc", "boolqa", "wic", "mnli", "cb", "copa", "qqp", "rte", "imdb", "sst-2",
            "dbpedia", "agnews", "yelp", "amazon", "yahoo"),
        6: ("yelp", "amazon", "mnli", "cb", "copa", "qqp", "rte", "imdb", "sst-2", "dbpedia",
            "agnews", "yahoo", "multirc", "boolqa", "wic"),
    },
    # SEEKR's two TRACE orders, "tracer1" (7) and "tracer2" (8): jinghan1he/SEEKR scripts/exp_seq_seekr.sh
    # (task_order). Numbered after 1-6 so that an order number names one sequence in every benchmark.
    "trace": {
        7: ("C-STANCE", "FOMC", "MeetingBank", "Py150", "ScienceQA", "NumGLUE-cm", "NumGLUE-ds", "20Minuten"),
        8: ("NumGLUE-cm", "NumGLUE-ds", "FOMC", "20Minuten", "C-STANCE", "Py150", "MeetingBank", "ScienceQA"),
    },
    # Super-NaturalInstructions task files (natural-instructions tasks/<name>.json). 9, 10: SEEKR's
    # "superni1" / "superni2" (its paper's orders 3 and 4), jinghan1he/SEEKR scripts/exp_seq_seekr.sh
    # (task_order, by task number). 11, 12: KIF's orders 1 and 2, WoodScene/TaSL
    # utils/dataset_order_superni.py (dataset_id 1, 2), the orders of circle-hit/SAPT
    # gen_script_superni_llama.py, which names the tasks in full. Streams: retain.data.superni_stream.
    "superni": {
        9: ("task1572_samsum_summary", "task363_sst2_polarity_classification", "task1290_xsum_summarization",
            "task181_outcome_extraction", "task002_quoref_answer_generation", "task1510_evalution_relation_extraction",
            "task073_commonsenseqa_answer_generation", "task748_glucose_reverse_cause_event_detection",
            "task511_reddit_tifu_long_text_summarization", "task591_sciq_answer_generation",
            "task195_sentiment140_classification", "task875_emotion_classification"),
        10: ("task748_glucose_reverse_cause_event_detection", "task073_commonsenseqa_answer_generation",
             "task1572_samsum_summary", "task195_sentiment140_classification", "task591_sciq_answer_generation",
             "task363_sst2_polarity_classification", "task1510_evalution_relation_extraction",
             "task181_outcome_extraction", "task511_reddit_tifu_long_text_summarization",
             "task002_quoref_answer_generation", "task1290_xsum_summarization", "task875_emotion_classification"),
        11: ("task1572_samsum_summary", "task363_sst2_polarity_classification", "task1290_xsum_summarization",
             "task181_outcome_extraction", "task002_quoref_answer_generation", "task1510_evalution_relation_extraction",
             "task639_multi_woz_user_utterance_generation", "task1729_personachat_generate_next",
             "task073_commonsenseqa_answer_generation", "task1590_diplomacy_text_generation",
             "task748_glucose_reverse_cause_event_detection", "task511_reddit_tifu_long_text_summarization",
             "task591_sciq_answer_generation", "task1687_sentiment140_classification", "task875_emotion_classification"),
        12: ("task748_glucose_reverse_cause_event_detection", "task073_commonsenseqa_answer_generation",
             "task1590_diplomacy_text_generation", "task639_multi_woz_user_utterance_generation",
             "task1572_samsum_summary", "task1687_sentiment140_classification", "task591_sciq_answer_generation",
             "task363_sst2_polarity_classification", "task1510_evalution_relation_extraction",
             "task1729_personachat_generate_next", "task181_outcome_extraction",
             "task511_reddit_tifu_long_text_summarization", "task002_quoref_answer_generation",
             "task1290_xsum_summarization", "task875_emotion_classification"),
    },
}

#: SEEKR's epochs per task of each TRACE order, in the order's task sequence (jinghan1he/SEEKR
#: scripts/exp_seq_seekr.sh, ``epochs``): applied with ``train.task_epochs: published``
#: (:mod:`retain.engine.task_epochs`); a task cut from an order keeps its epochs in that order.
TRACE_EPOCHS: dict[int, tuple[int, ...]] = {
    7: (5, 5, 5, 5, 5, 5, 10, 5),
    8: (10, 10, 10, 5, 5, 5, 5, 5),
}


@dataclass(frozen=True)
class TraceTask:
    """How TRACE's evaluation scores one of its tasks: the metric and the answer post-processing
    (:mod:`retain.evaluation.answer_processing`) applied to the generated text first."""

    metric: str
    answer_processing: str
    source: str  # the evaluation files the rule comes from


# Metrics: BeyonderXX/TRACE evaluations/eval_<task>.py (accuracy; ROUGE-L for MeetingBank, fuzz
# similarity for Py150, SARI for 20Minuten). Post-processing: jinghan1he/SEEKR re_eval.py (short
# answer after "\nAnswer:" / before "\nReasoning:"; first character for C-STANCE, FOMC, ScienceQA) and
# evaluations/eval_ScienceQA.py (first character of the target too).
TRACE_TASKS: dict[str, TraceTask] = {
    "C-STANCE": TraceTask("accuracy_trace", "trace_first_char", "eval_CStance.py, re_eval.py"),
    "FOMC": TraceTask("accuracy_trace", "trace_first_char", "eval_FOMC.py, re_eval.py"),
    "MeetingBank": TraceTask("rouge_l_trace", "trace_answer", "eval_MeetingBank.py, re_eval.py"),
    "Py150": TraceTask("edit_sim_trace", "trace_answer", "eval_Py150.py, re_eval.py"),
    "ScienceQA": TraceTask("accuracy_trace", "trace_choice_letter", "eval_ScienceQA.py, re_eval.py"),
    "NumGLUE-cm": TraceTask("accuracy_trace", "trace_answer", "eval_NumGLUE_cm.py, re_eval.py"),
    "NumGLUE-ds": TraceTask("accuracy_trace", "trace_answer", "eval_NumGLUE_ds.py, re_eval.py"),
    "20Minuten": TraceTask("sari_trace", "trace_answer", "eval_20Minuten.py, re_eval.py"),
}

#: benchmark name -> one-line description (for `retain list`).
BENCHMARKS: dict[str, str] = {
    "demo": "generated toy tasks: runs in seconds on a CPU, no data needed (stream.demo_*)",
    "standard-cl": "4 text-classification tasks, orders 1-3 (needs stream.data_root)",
    "long-sequence": "15 classification / NLI / QA tasks, orders 4-6 (needs stream.data_root)",
    "trace": "TRACE's 8 tasks (stance, QA, code, math, summarising, simplifying), SEEKR's orders 7-8 "
             "(needs stream.data_root: TRACE's task folders)",
    "superni": "Super-NaturalInstructions: SEEKR's 12-task orders 9-10, KIF's 15-task orders 11-12 "
               "(needs stream.data_root: the natural-instructions folder with tasks/)",
    "custom": "your own tasks: stream.tasks is a list of sources (see `retain list` formats)",
}


def build_stream(config: StreamConfig, seed: int) -> Stream:
    """Build the task stream a run trains on, with its held-out general sets.

    A task without training examples is refused: a run over it would "complete" having trained
    nothing. The readers' warnings and log lines (records left out, label sets that differ) are
    held until the stream is built: when reading ends in an error, its one line is all that is
    printed (a warning about records of a file that is then refused is noise before it).
    """
    with _held_reports():
        stream = _build_stream(config, seed)
        for task in stream.tasks:
            if not task.train:
                raise DataError(f"task {task.name!r}: no training examples (a run would train nothing on it)")
    return stream


class _Holding(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _held_reports() -> Iterator[None]:
    """Hold the warnings and ``retain.data`` log records raised inside; give them out, in order
    and as they would have been, only when the block ends without an exception."""
    data_logger = logging.getLogger("retain.data")
    holder = _Holding()
    propagate = data_logger.propagate
    data_logger.addHandler(holder)
    data_logger.propagate = False
    ok = False
    try:
        with warnings.catch_warnings(record=True) as caught:  # the caller's filters still apply
            yield
        ok = True
    finally:
        data_logger.removeHandler(holder)
        data_logger.propagate = propagate
    if ok:
        for record in holder.records:
            data_logger.handle(record)
        for item in caught:
            warnings.warn_explicit(item.message, item.category, item.filename, item.lineno, source=item.source)


def _build_stream(config: StreamConfig, seed: int) -> Stream:
    if config.benchmark == "demo":
        from retain.data.demo import build_demo_stream

        stream = build_demo_stream(config, seed)
        stream.general = _build_general(config, seed)  # held-out sets apply to every benchmark
        return stream
    if config.benchmark == "trace":
        return _build_trace(config, seed)
    if config.benchmark == "superni":
        return _build_superni(config, seed)
    if config.benchmark in BENCHMARK_ORDERS:
        return _build_benchmark(config, seed)
    if config.benchmark == "custom":
        return Stream("custom", _build_custom_tasks(config, seed), _build_general(config, seed))
    raise ConfigError(
        f"stream.benchmark: unknown benchmark {config.benchmark!r} (known: {', '.join(BENCHMARKS)})"
    )


# ---------------------------------------------------------------------------------------------
# Published benchmarks.


def _data_root(config: StreamConfig) -> Path:
    """The benchmark folder, checked up front so a typo fails before any model is loaded."""
    hint = f"a folder holding train/ and {config.eval_split}/"
    if not config.data_root:
        raise ConfigError(f"stream.data_root: required for benchmark {config.benchmark} ({hint})")
    root = Path(config.data_root).expanduser()
    if not root.is_dir():
        raise ConfigError(f"stream.data_root: {root} is not a folder ({hint})")
    for sub in ("train", config.eval_split):
        if not (root / sub).is_dir():
            raise ConfigError(f"stream.data_root: {root} has no {sub}/ folder ({hint})")
    return root


def _order(config: StreamConfig) -> int:
    orders = BENCHMARK_ORDERS[config.benchmark]
    order = config.order if config.order is not None else min(orders)
    if order not in orders:
        raise ConfigError(
            f"stream.order: {order} is not an order of {config.benchmark} "
            f"(orders: {', '.join(str(o) for o in orders)})"
        )
    return order


def _task_names(config: StreamConfig, order: int) -> list[str]:
    """The order's tasks, or ``stream.tasks`` as a subset / reordering of the benchmark's tasks."""
    if not config.tasks:
        return list(BENCHMARK_ORDERS[config.benchmark][order])
    known = sorted({t for tasks in BENCHMARK_ORDERS[config.benchmark].values() for t in tasks})
    for i, name in enumerate(config.tasks):
        if name not in known:
            raise ConfigError(
                f"stream.tasks[{i}]: {name!r} is not a task of {config.benchmark} "
                f"(known: {', '.join(known)})"
            )
    _reject_duplicates(list(config.tasks), "stream.tasks")
    return list(config.tasks)


def _build_benchmark(config: StreamConfig, seed: int) -> Stream:
    root = _data_root(config)
    order = _order(config)
    tasks = [
        _make_task(
            name,
            read_alpaca(root / "train" / f"{name}.json"),
            read_alpaca(root / config.eval_split / f"{name}.json"),
            config,
            seed,
            infer=_infer(config),
        )
        for name in _task_names(config, order)
    ]
    return Stream(f"{config.benchmark}-order{order}", tasks, _build_general(config, seed))


def _trace_root(config: StreamConfig, names: Sequence[str]) -> Path:
    """TRACE's data folder, with a folder per task of the stream: every missing one named at once."""
    return benchmark_folder(
        config, "a folder holding one folder per TRACE task (C-STANCE/, FOMC/, ...) of train.json, eval.json, test.json",
        "task folder", lambda root: [f"{name}/" for name in names if not (root / name).is_dir()],
    )


def _build_trace(config: StreamConfig, seed: int) -> Stream:
    """TRACE's tasks from its published layout, each scored as TRACE's evaluation scores it.

    Label sets are off (every record is kept and scored, as in TRACE); the metric and the answer
    post-processing come from :data:`TRACE_TASKS`. ``stream.eval_split`` dev reads a task's
    eval.json (TRACE's validation file), test its test.json (what TRACE's tables report).
    """
    order = _order(config)
    names = _task_names(config, order)
    root = _trace_root(config, names)
    tasks = []
    for name in names:
        spec = TRACE_TASKS[name]
        task = _make_task(
            name, read_trace(root / name, "train"), read_trace(root / name, config.eval_split), config, seed,
            metric=spec.metric, infer=False,
        )
        task.metric_reason = f"TRACE scores {name} so ({spec.source})"
        task.answer_processing = spec.answer_processing
        task.published_epochs = float(TRACE_EPOCHS[order][BENCHMARK_ORDERS["trace"][order].index(name)])
        tasks.append(task)
    return Stream(f"trace-order{order}", tasks, _build_general(config, seed))


# ---------------------------------------------------------------------------------------------
# Custom tasks and general sets.


def _build_superni(config: StreamConfig, seed: int) -> Stream:
    """The order's tasks, each split by :func:`split_instances` and scored as its paper scores it.

    Label sets are off (every instance is kept and scored from the generated text, as in the
    papers); ``stream.eval_split`` picks the dev or the test part; ``max_train_per_task`` /
    ``max_eval_per_task`` cap the parts further.
    """
    from retain.data.superni_stream import ACCURACY_TASKS, ORDER_PAPERS, SCORING, read_superni, split_instances, superni_root  # noqa: PLC0415

    order = _order(config)
    paper, _ = ORDER_PAPERS[order]
    scoring = SCORING[paper]
    names = _task_names(config, order)
    root = superni_root(config, names)
    tasks = []
    for name in names:
        read = read_superni(root / "tasks" / f"{name}.json")
        parts = split_instances(read.examples, seed, name)
        metric = scoring.accuracy if name in ACCURACY_TASKS else scoring.rouge
        task = _make_task(
            name, _superni_part(read, parts["train"]), _superni_part(read, parts[config.eval_split], skipped=0), config, seed,
            metric=metric, infer=False,
        )
        kind = "exact match" if name in ACCURACY_TASKS else "ROUGE-L"
        task.metric_reason = f"{paper} scores {name} by {kind} ({scoring.source})"
        task.answer_processing = scoring.answer_processing
        task.published_epochs = scoring.epochs
        tasks.append(task)
    return Stream(f"superni-order{order}", tasks, _build_general(config, seed))


def _superni_part(read: ReadResult, examples: list[Example], skipped: int | None = None) -> ReadResult:
    """One part of a task file's read result (its left-out records counted once, on train)."""
    return replace(read, examples=examples, skipped=read.skipped if skipped is None else skipped)


def _sources(entries: Sequence[Any], key: str, skip: Any = None) -> list[tuple[str, DataSourceConfig]]:
    """(config path, DataSourceConfig) for each entry of ``stream.tasks`` / ``stream.general``
    (but those ``skip`` says are read elsewhere)."""
    sources = []
    for i, entry in enumerate(entries):
        if skip is not None and skip(entry):
            continue
        path = f"{key}[{i}]"
        if isinstance(entry, DataSourceConfig):
            source = entry
        elif isinstance(entry, dict):
            source = build_dataclass(DataSourceConfig, entry, path)
        else:
            raise ConfigError(f"{path}: expected a mapping (name, format, train, eval, ...), got {entry!r}")
        if source.metric is not None:
            check_metric(source.metric, f"{path}.metric")
        sources.append((path, source))
    return sources


def _source_name(source: DataSourceConfig, path: str) -> str:
    """The task name: given, else the stem of the file / folder / dataset it reads."""
    if source.name:
        return source.name
    if source.hf_config:
        return source.hf_config
    location = source.eval or source.path or source.train
    if not location:
        raise ConfigError(f"{path}.name: required (no file or path to name the task after)")
    return Path(location.rstrip("/")).stem


def _reject_duplicates(names: list[str], key: str) -> None:
    seen = set()
    for i, name in enumerate(names):
        if name in seen:
            raise ConfigError(f"{key}[{i}]: duplicate task name {name!r} (task names must be unique)")
        seen.add(name)


def _build_custom_tasks(config: StreamConfig, seed: int) -> list[Task]:
    if not config.tasks:
        raise ConfigError("stream.tasks: benchmark custom needs at least one task source")
    sources = _sources(config.tasks, "stream.tasks")
    names = [_source_name(source, path) for path, source in sources]
    _reject_duplicates(names, "stream.tasks")
    return [
        _make_task(
            name,
            read_source(source, "train", config.eval_split, path),
            read_source(source, "eval", config.eval_split, path),
            config,
            seed,
            metric=source.metric,
            infer=_infer(config, source),
        )
        for name, (path, source) in zip(names, sources)
    ]


def _build_general(config: StreamConfig, seed: int) -> list[Task]:
    """Held-out general sets: only their eval part is read; labels come from the eval targets.
    lm-eval entries and presets follow retain's own sets (:mod:`retain.evaluation.lm_eval_general`)."""
    from retain.evaluation.lm_eval_general import general_entries, is_lm_eval_entry, lm_eval_tasks

    entries = general_entries(config.general)
    sources = _sources(entries, "stream.general", skip=is_lm_eval_entry)
    names = [_source_name(source, path) for path, source in sources]
    _reject_duplicates(names, "stream.general")
    general = []
    for name, (path, source) in zip(names, sources):
        result = read_source(source, "eval", config.eval_split, path)
        shape = answer_shape(
            result.examples, [], declared=result.labels, raw_text=result.raw_text, metric=source.metric,
            infer=_infer(config, source),
        )
        examples = _require(result.examples, name, "eval", result.source)
        examples = _cap(examples, config.max_eval_per_task, f"{seed}-general-{name}-eval")
        general.append(
            Task(name, [], examples, shape.metric, shape.labels, result.raw_text, skipped_records=result.skipped,
                 metric_reason=shape.reason)
        )
    for task in lm_eval_tasks(entries, config.lm_eval_include_path):
        if task.name in names:
            raise ConfigError(f"stream.general: two sets are named {task.name!r} (give an lm-eval entry a name)")
        names.append(task.name)
        general.append(task)
    return general


# ---------------------------------------------------------------------------------------------
# One task: labels, unknown-label filtering, caps.


def _require(examples: list[Example], task: str, part: str, file: str) -> list[Example]:
    if not examples:
        raise DataError(f"task {task!r}: no {part} examples left from {file} (all records were left out)")
    return examples


def _cap(examples: list[Example], cap: Optional[int], seed_text: str) -> list[Example]:
    """A seeded, order-preserving sample of ``cap`` examples (all of them when fewer)."""
    if cap is None or len(examples) <= cap:
        return examples
    chosen = sorted(random.Random(seed_text).sample(range(len(examples)), cap))
    return [examples[i] for i in chosen]


def _make_task(
    name: str,
    train: ReadResult,
    evaluation: ReadResult,
    config: StreamConfig,
    seed: int,
    metric: Optional[str] = None,
    infer: bool = True,
) -> Task:
    """Read results -> Task: label set and metric, unknown labels reported and dropped, then caps."""
    shape = answer_shape(
        train.examples, evaluation.examples, declared=train.labels, raw_text=train.raw_text, metric=metric,
        infer=infer,
    )
    labels = shape.labels
    train_kept, train_unknown = filter_unknown_labels(name, train.source, train.examples, labels)
    eval_kept, eval_unknown = filter_unknown_labels(name, evaluation.source, evaluation.examples, labels)
    train_kept = _require(train_kept, name, "train", train.source)
    eval_kept = _require(eval_kept, name, "eval", evaluation.source)
    return Task(
        name=name,
        train=_cap(train_kept, config.max_train_per_task, f"{seed}-{name}-train"),
        eval=_cap(eval_kept, config.max_eval_per_task, f"{seed}-{name}-eval"),
        metric=shape.metric,
        labels=labels,
        raw_text=train.raw_text,
        skipped_records=train.skipped + evaluation.skipped + train_unknown + eval_unknown,
        metric_reason=shape.reason,
    )


def _infer(config: StreamConfig, source: Optional[DataSourceConfig] = None) -> bool:
    """A task's own ``infer_labels`` wins over the stream's."""
    if source is not None and source.infer_labels is not None:
        return source.infer_labels
    return config.infer_labels


__all__ = ["BENCHMARKS", "BENCHMARK_ORDERS", "TRACE_EPOCHS", "TRACE_TASKS", "TraceTask", "build_stream"]
