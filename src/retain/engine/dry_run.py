"""``retain run --dry-run``: what a run would do, read from the config and the data alone.

Before spending hours on a stream, a user wants to see the config as retain resolved it (defaults
and aliases filled in), how many examples each task holds after the caps, how many prompts the
length limits cut, which labels each task is scored among, and what each method will do. All of
that is known without a model: only the tokenizer is loaded (to count truncation), no model
weights, no torch-heavy module of the engine, and no run folder is created or touched.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import yaml

from retain.config import RunConfig, make_config
from retain.data.benchmarks import build_stream
from retain.engine.task_epochs import resolve_task_epochs
from retain.data.types import Stream, Task
from retain.engine.preflight import check_run_folder
from retain.errors import RetainError
from retain.methods.names import check_method_names, shipped_method_summaries

_LABELS_SHOWN = 12


def _labels_text(task: Task) -> str:
    if not task.labels:
        return "free text" if not task.raw_text else "raw text"
    shown = ", ".join(task.labels[:_LABELS_SHOWN])
    more = f", … (+{len(task.labels) - _LABELS_SHOWN})" if len(task.labels) > _LABELS_SHOWN else ""
    return f"{len(task.labels)} labels: {shown}{more}"


def _tokenizer(config: RunConfig, stream: Stream) -> Any:
    """The run's tokenizer (never the model): the word tokenizer of built-in models, else the Hub's."""
    if config.model.name_or_path.startswith("builtin:") and config.model.tokenizer is None:
        from retain.data.tokenizer import build_word_tokenizer

        texts = [text for task in [*stream.tasks, *stream.general] for ex in [*task.train, *task.eval] for text in (ex.prompt, ex.target)]
        return build_word_tokenizer(texts)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(config.model.tokenizer or config.model.name_or_path)


def _lengths(tokenizer: Any, texts: Sequence[str], special: bool) -> list[int]:
    if not texts:
        return []
    return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=special, verbose=False)["input_ids"]]


def truncation_counts(
    tokenizer: Any, task: Task, max_source: int, max_target: int, count_targets: bool = True
) -> tuple[int, int, int]:
    """(prompts cut, targets cut, examples) over the task's train and eval examples, as the
    encoder will count them (a target needs room for the end-of-sequence token; a classifier's
    targets are classes, never tokenized: ``count_targets`` False)."""
    examples = [*task.train, *task.eval]
    if task.raw_text:
        cut = sum(n + 1 > max_source + max_target for n in _lengths(tokenizer, [e.target for e in examples], True))
        return 0, cut, len(examples)
    prompts = sum(n > max_source for n in _lengths(tokenizer, [e.prompt for e in examples], True))
    targets = sum(n >= max_target for n in _lengths(tokenizer, [e.target for e in examples], False)) if count_targets else 0
    return prompts, targets, len(examples)


def _stream_lines(config: RunConfig, stream: Stream) -> list[str]:
    cfg = config.stream
    caps = [f"max_train_per_task={cfg.max_train_per_task}" if cfg.max_train_per_task else "",
            f"max_eval_per_task={cfg.max_eval_per_task}" if cfg.max_eval_per_task else ""]
    caps_text = ", ".join(c for c in caps if c) or "none"
    order = f", order {cfg.order}" if cfg.order is not None else ""
    lines = [f"stream: {stream.name}{order}, {len(stream.tasks)} tasks, eval split {cfg.eval_split}; caps: {caps_text}; "
             f"lengths: prompts {cfg.max_source_length} tokens, targets {cfg.max_target_length} tokens"]
    tokenizer: Optional[Any] = None
    try:
        tokenizer = _tokenizer(config, stream)
    except Exception as exc:  # noqa: BLE001  (any loading failure only costs the truncation counts)
        lines.append(f"  (truncation not counted: the tokenizer could not be loaded: {exc})")
    classifier = config.model.kind == "classifier" or config.model.name_or_path == "builtin:tiny-bert"
    header = ["task", "metric", "train", "eval", "cut prompts", "cut targets", "labels"]
    rows = []
    for kind, tasks in (("", stream.tasks), ("general: ", stream.general)):
        for task in tasks:
            cut_p = cut_t = "?"
            if tokenizer is not None:
                p, t, _ = truncation_counts(tokenizer, task, cfg.max_source_length, cfg.max_target_length, not classifier)
                cut_p, cut_t = str(p), ("—" if classifier else str(t))
            skipped = f" ({task.skipped_records} records skipped)" if task.skipped_records else ""
            rows.append([f"{kind}{task.name}", task.metric, str(len(task.train)), str(len(task.eval)) + skipped,
                         cut_p, cut_t, _labels_text(task)])
    from retain.reporting.tables import text_table  # noqa: PLC0415

    lines += ["  " + line for line in text_table(header, rows, numeric={2, 3, 4, 5}).splitlines()]
    lines += [f"  {task.name}: {task.metric} because {task.metric_reason}{_processing_text(task)}"
              for task in [*stream.tasks, *stream.general] if getattr(task, "metric_reason", "")]
    if config.train.task_epochs is not None:
        epochs = resolve_task_epochs(config.train, stream)
        lines.append("  epochs per task (train.task_epochs): "
                     + ", ".join(f"{task.name} {value:g}" for task, value in zip(stream.tasks, epochs)))
    return lines


def _processing_text(task: Task) -> str:
    """'; answers post-processed by RULE' for a task whose answers are changed before scoring."""
    rule = getattr(task, "answer_processing", "")
    return f"; answers post-processed by {rule}" if rule else ""


def _method_lines(config: RunConfig) -> list[str]:
    summaries = shipped_method_summaries()
    lines = ["methods (called in this order at every hook):"]
    for spec in config.method_specs():
        params = ", ".join(f"{k}={v}" for k, v in spec.params.items())
        lines.append(f"  {spec.name}{f'({params})' if params else ''}: {summaries.get(spec.name) or 'a user-registered method'}")
    lines.append("  (parameters not given keep their defaults: `retain list` shows them)")
    return lines


def describe_run(source: Any, overrides: Optional[list[str]] = None) -> str:
    """The dry-run text: resolved config, stream summary, methods, where the run would write."""
    config = make_config(source if not isinstance(source, str) else Path(source), overrides)
    check_method_names(config.method_specs())
    stream = build_stream(config.stream, config.seed)
    parts = ["# resolved config", yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True).rstrip(), ""]
    parts += _stream_lines(config, stream) + [""]
    parts += _method_lines(config) + [""]
    try:
        check_run_folder(config, resume=False, overwrite=False, probe=False)
        folder = f"run folder: {config.run_dir} (not created: dry run)"
    except RetainError as exc:
        folder = f"run folder: {exc}"
    parts += [folder, "dry run: nothing was trained, evaluated or written"]
    return "\n".join(parts)
