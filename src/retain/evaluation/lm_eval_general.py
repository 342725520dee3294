"""General ability through lm-evaluation-harness: ``stream.general`` entries that name lm-eval tasks.

An entry ``{lm_eval: mmlu, num_fewshot: 5}`` (or the preset string ``seekr-ga``) is scored on the
in-memory model, before training and after every task, in the same general rows as retain's own
held-out sets (``general.json``, the general-ability delta, the report's plot). The model is handed
to lm-eval's Hugging Face wrapper as an instance (``HFLM(pretrained=model)``), so no row exports a
checkpoint; a PEFT (LoRA) model is scored as it trains, adapters active.

Why process 0 alone scores under data parallelism: lm-eval's wrapper drops its own data
parallelism when it is given a model instance (it sets world size 1), and dividing lm-eval's
requests over processes would mean re-implementing its evaluation loop. So process 0 scores
(inside the runner's ``full_parameters``, where a forward holds no collective) and broadcasts
the result; the other processes wait in that broadcast, on a gloo group of its own whose timeout
is long enough for a real benchmark (MMLU on a 7B model takes far longer than the default
process-group timeout). Generation there is told not to synchronise with the other processes
(see :func:`score_general_row`).

Causal and seq2seq models are scored (lm-eval's two backends); a classifier has no text to score
and is refused at row 0.

lm-eval is an optional extra (``pip install retain[lm-eval]``); nothing here imports it until a
config names an lm-eval entry.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Optional

from retain.config import build_dataclass, option
from retain.data.types import Task
from retain.errors import ConfigError

#: the key that marks a ``stream.general`` mapping as an lm-eval entry
ENTRY_KEY = "lm_eval"
#: the key of a preset with settings for each of its sets ({preset: seekr-ga, limit: 100})
PRESET_KEY = "preset"
#: the settings a preset mapping may give its sets
PRESET_SETTINGS = ("limit", "batch_size", "include_path")
#: prefix of the metric names recorded in general.json for lm-eval sets ("lm-eval/acc,none")
METRIC_PREFIX = "lm-eval/"
#: results folder inside the run folder: lm-eval's full result dict per row
RESULTS_DIR = "general"
INSTALL_HINT = "pip install retain[lm-eval]"
#: metrics lm-eval reports on a scale of their own (sacrebleu's are percentages already;
#: perplexities and likelihoods are unbounded): kept as they are, not multiplied by 100
UNSCALED_METRICS = frozenset({"bleu", "chrf", "chrf++", "ter", "likelihood", "bits_per_byte"})
#: retain's model kinds lm-eval can score, and lm-eval's backend for each
LM_BACKENDS = {"causal": "causal", "seq2seq": "seq2seq"}
#: how long the other processes wait for process 0's scores (a real benchmark on a large model
#: takes hours; the default process-group timeout is minutes)
WAIT_TIMEOUT = datetime.timedelta(hours=48)


@dataclass
class LmEvalEntry:
    """One ``stream.general`` entry scored by lm-evaluation-harness."""

    lm_eval: str = option(
        "lm-eval task, group or tag name (as `lm-eval ls tasks` lists them, e.g. mmlu, gsm8k_cot, "
        "boolq), or one defined in a YAML file under include_path.", "",
    )
    name: str = option("Name of the set in the general rows; empty = the lm_eval task name.", "")
    num_fewshot: Optional[int] = option("Few-shot examples per prompt; null = the task's own default.", None, low=0)
    limit: Optional[float] = option(
        "Examples scored per task: a count (>= 1) or a share of the set (< 1); null = all of them. "
        "A group's limit applies to each of its subtasks, as in lm-eval.", None, low=0.0, low_open=True,
    )
    batch_size: Optional[int] = option("lm-eval batch size; null = eval.batch_size.", None, low=1)
    metric: Optional[str] = option(
        "The score recorded per row: a metric the task reports, e.g. acc, acc_norm, exact_match, or "
        "with lm-eval's filter, exact_match,flexible-extract; null = the first metric of the task's "
        "metric_list (a group's aggregate metric), under its first filter. Scaled to 0-100 except "
        "perplexity-like metrics.", None,
    )
    include_path: Optional[str] = option(
        "Folder of custom lm-eval task YAML files (lm-eval's --include_path); null = "
        "stream.lm_eval_include_path.", None,
    )


@dataclass
class LmEvalSet:
    """An lm-eval entry as a run scores it: validated, with its defaults filled in."""

    name: str
    task: str
    num_fewshot: Optional[int]
    limit: Optional[float]
    batch_size: Optional[int]
    metric: Optional[str]
    include_path: Optional[str]
    #: filled in from lm-eval's own ``higher_is_better`` at the first scored row
    higher_is_better: bool = True

    @property
    def metric_label(self) -> str:
        """The metric name general.json records for this set ("lm-eval/acc"; the key lm-eval
        reported, with its filter, once scored)."""
        return METRIC_PREFIX + (self.metric or "default")


@dataclass
class LmEvalTask(Task):
    """An lm-eval set in ``stream.general``: a general set with no examples of retain's own (lm-eval
    reads its data), so the general rows, general.json and the report treat it as any other set."""

    spec: Optional[LmEvalSet] = None

    @property
    def higher_is_better(self) -> bool:  # lm-eval's own direction, known once scored
        return self.spec.higher_is_better if self.spec is not None else True


def lm_eval_tasks(general: Any, include_path: Optional[str] = None) -> list[Task]:
    """The lm-eval entries of ``stream.general`` as general sets (see :func:`build_lm_eval_sets`)."""
    tasks: list[Task] = []
    for spec in build_lm_eval_sets(general, include_path):
        shots = "the task's own shots" if spec.num_fewshot is None else f"{spec.num_fewshot}-shot"
        limit = "all examples" if spec.limit is None else f"limit {spec.limit}"
        tasks.append(LmEvalTask(
            spec.name, [], [], metric=spec.metric_label,
            metric_reason=f"lm-evaluation-harness task {spec.task}, {shots}, {limit}", spec=spec,
        ))
    return tasks


# ---------------------------------------------------------------------------------------------
# Presets.

#: SEEKR's Table 2 (general ability), mapped to lm-eval 0.4.13 task names. SEEKR's official code
#: (jinghan1he/SEEKR) has no general-ability evaluation, and the shot counts below are those its
#: paper follows from TRACE; see README "General ability through lm-evaluation-harness" for the
#: mapping, its source and its gaps.
PRESETS: dict[str, list[dict[str, Any]]] = {
    "seekr-ga": [
        {"lm_eval": "mmlu", "name": "MMLU", "num_fewshot": 5, "metric": "acc"},
        {"lm_eval": "gsm8k_cot", "name": "GSM8K", "num_fewshot": 8, "metric": "exact_match,flexible-extract"},
        {"lm_eval": "bbh", "name": "BBH", "num_fewshot": 3, "metric": "exact_match,get-answer"},
        {"lm_eval": "tydiqa_goldp", "name": "TydiQA", "num_fewshot": 1, "metric": "f1"},
        {"lm_eval": "boolq", "name": "BoolQ", "num_fewshot": 0, "metric": "acc"},
        {"lm_eval": "piqa", "name": "PIQA", "num_fewshot": 0, "metric": "acc"},
    ],
}


def is_lm_eval_entry(entry: Any) -> bool:
    """A preset (its name, or a mapping with a ``preset`` key) or a mapping with an ``lm_eval`` key:
    this module's entries; the others are retain's own held-out sets
    (:func:`retain.data.benchmarks._build_general`)."""
    return isinstance(entry, str) or (isinstance(entry, dict) and (ENTRY_KEY in entry or PRESET_KEY in entry))


def general_entries(general: Any) -> list[Any]:
    """``stream.general`` as a list (a single preset string is allowed: ``general: seekr-ga``)."""
    return [general] if isinstance(general, str) else list(general or [])


def _expand(entries: Sequence[Any]) -> list[tuple[str, dict[str, Any]]]:
    """(config path, mapping) per lm-eval entry, presets expanded in place."""
    out = []
    for i, entry in enumerate(entries):
        path = f"stream.general[{i}]"
        settings: dict[str, Any] = {}
        if isinstance(entry, dict) and PRESET_KEY in entry:
            settings = {k: v for k, v in entry.items() if k != PRESET_KEY}
            for key in settings:
                if key not in PRESET_SETTINGS:
                    raise ConfigError(f"{path}.{key}: not a setting of a preset (a preset takes {', '.join(PRESET_SETTINGS)})")
            path, entry = f"{path}.{PRESET_KEY}", entry[PRESET_KEY]
        if isinstance(entry, str):
            if entry not in PRESETS:
                raise ConfigError(f"{path}: unknown preset {entry!r} (known: {', '.join(PRESETS)}; "
                                  f"or a mapping such as {{lm_eval: mmlu, num_fewshot: 5}})")
            out += [(f"{path} ({entry}: {item['name']})", {**item, **settings}) for item in PRESETS[entry]]
        elif is_lm_eval_entry(entry):
            out.append((path, entry))
    return out


def build_lm_eval_sets(general: Any, include_path: Optional[str] = None) -> list[LmEvalSet]:
    """The lm-eval entries of ``stream.general``, validated up front: keys and values, lm-eval
    installed, every task name known to lm-eval (read from its task index, no model run).

    ``include_path``: ``stream.lm_eval_include_path``, used by the entries that set none.
    """
    items = _expand(general_entries(general))
    if not items:
        return []
    sets = []
    for path, data in items:
        entry = build_dataclass(LmEvalEntry, data, path)
        if not isinstance(entry.lm_eval, str) or not entry.lm_eval.strip():
            raise ConfigError(f"{path}.lm_eval: a task name is required (e.g. mmlu, boolq)")
        where = entry.include_path or include_path
        if where is not None and not Path(where).is_dir():
            raise ConfigError(f"{path}.include_path: {where} is not a folder")
        limit = entry.limit
        if limit is not None and limit >= 1:
            if limit != int(limit):
                raise ConfigError(f"{path}.limit: {limit!r}: a count must be a whole number (or a share below 1)")
            limit = int(limit)
        sets.append(LmEvalSet(
            name=entry.name or entry.lm_eval, task=entry.lm_eval, num_fewshot=entry.num_fewshot, limit=limit,
            batch_size=entry.batch_size, metric=entry.metric, include_path=str(Path(where).resolve()) if where else None,
        ))
    _require_lm_eval(items[0][0])
    for (path, _), spec in zip(items, sets):
        if spec.task not in _known_tasks(spec.include_path, spec.task):
            where = f" or in {spec.include_path}" if spec.include_path else " (custom tasks: include_path)"
            raise ConfigError(
                f"{path}.lm_eval: unknown lm-eval task {spec.task!r}: not among lm-eval's tasks (`lm-eval ls tasks`)"
                f"{where}"
            )
        spec.metric = _checked_metric(spec, path)
    return sets


def _names(items: Any, key: str) -> list[str]:
    return [str(item[key]) for item in items or [] if isinstance(item, dict) and isinstance(item.get(key), str)]


def _checked_metric(spec: LmEvalSet, path: str) -> Optional[str]:
    """The set's "metric,filter" key, read from the task's YAML in lm-eval's index (no dataset, no
    model): ``metric`` checked against what the task reports, or the task's default when null.

    A task or group whose YAML lists its metrics is checked here; any other (a tag, a task defined
    in Python, a task relying on its output type's default metrics) is checked when first scored.
    """
    entry = _manager_for(spec.include_path, spec.task).task_index.get(spec.task)
    config = getattr(entry, "cfg", None) or {}
    listed = config.get("metric_list") or config.get("aggregate_metric_list")
    metrics = _names(listed, "metric")
    if not metrics:
        return spec.metric
    if "metric_list" in config:
        filters = _names(config.get("filter_list"), "name") or ["none"]
    else:  # a group's aggregate names its filter in each entry
        filters = [str(item.get("filter_list", "none")) for item in listed if isinstance(item, dict)][:1] or ["none"]
    if spec.metric is None:
        return f"{metrics[0]},{filters[0]}"
    metric, _, wanted_filter = spec.metric.partition(",")
    if metric not in metrics:
        raise ConfigError(
            f"{path}.metric: {spec.metric!r}: lm-eval task {spec.task!r} reports {', '.join(metrics)}"
        )
    if wanted_filter and wanted_filter not in filters:
        raise ConfigError(
            f"{path}.metric: {spec.metric!r}: lm-eval task {spec.task!r} has no filter {wanted_filter!r} "
            f"(its filters: {', '.join(filters)})"
        )
    return spec.metric


def _require_lm_eval(path: str) -> None:
    try:
        import lm_eval  # noqa: F401, PLC0415
    except ImportError:
        raise ConfigError(f"{path}: lm-eval task entries need lm-evaluation-harness ({INSTALL_HINT})") from None


_TASK_MANAGERS: dict[tuple[Optional[str], bool], Any] = {}


def task_manager(include_path: Optional[str], with_defaults: bool = True) -> Any:
    """lm-eval's task index (cached per process: building lm-eval's full index takes seconds)."""
    key = (include_path, with_defaults)
    if key not in _TASK_MANAGERS:
        from lm_eval.tasks import TaskManager  # noqa: PLC0415

        with _quiet_lm_eval():
            _TASK_MANAGERS[key] = TaskManager(include_path=include_path, include_defaults=with_defaults)
    return _TASK_MANAGERS[key]


def _manager_for(include_path: Optional[str], task: str) -> Any:
    """The smallest index that knows ``task``: the custom folder alone when it defines it (no need
    to read lm-eval's thousands of built-in task files), else lm-eval's full index."""
    if include_path is not None and task in task_manager(include_path, with_defaults=False).all_tasks:
        return task_manager(include_path, with_defaults=False)
    return task_manager(include_path)


def _known_tasks(include_path: Optional[str], task: str) -> Any:
    return _manager_for(include_path, task).all_tasks


# ---------------------------------------------------------------------------------------------
# Scoring.


@contextlib.contextmanager
def _quiet_lm_eval() -> Iterator[None]:
    """lm-eval's info lines and its warnings about being handed a model instance (which is the
    point here) kept off the run's log; errors still show."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    """lm-eval seeds Python's, NumPy's and torch's global generators; the run's states come back
    afterwards, so scoring a row does not change what the training after it draws."""
    import numpy as np  # noqa: PLC0415
    import torch  # noqa: PLC0415

    states = (random.getstate(), np.random.get_state(), torch.random.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.random.set_rng_state(states[2])
        if states[3] is not None:
            torch.cuda.set_rng_state_all(states[3])


def evaluate_sets(
    model: Any, tokenizer: Any, specs: Sequence[LmEvalSet], batch_size: int, seed: int,
    generation: Optional[dict[str, Any]] = None, backend: str = "default",
) -> dict[str, Any]:
    """lm-eval's result dict for sets that share their settings (one ``simple_evaluate`` call, as
    lm-eval's command line scores a list of tasks) on the model as it is (eval mode is the caller's).
    ``generation``: settings added to every generation task's (see :func:`score_general_row`);
    ``backend``: lm-eval's ``causal`` or ``seq2seq`` (``default``: read from the model's config)."""
    import lm_eval  # noqa: PLC0415
    from lm_eval.models.huggingface import HFLM  # noqa: PLC0415

    first = specs[0]
    with _quiet_lm_eval(), _rng_kept():
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=first.batch_size or batch_size, backend=backend)
        return lm_eval.simple_evaluate(
            model=lm, tasks=[spec.task for spec in specs], num_fewshot=first.num_fewshot, limit=first.limit,
            task_manager=_manager_for(first.include_path, first.task), bootstrap_iters=0, log_samples=False,
            random_seed=seed, numpy_random_seed=seed, torch_random_seed=seed, fewshot_random_seed=seed,
            gen_kwargs=generation,
        )


def calls(specs: Sequence[LmEvalSet], batch_size: int) -> list[list[int]]:
    """The sets each lm-eval call scores (positions in ``specs``): plain tasks with the same
    settings share one call (lm-eval's per-call set-up, e.g. its environment report, is paid once);
    a group or tag has a call of its own, so that its results are its members' alone."""
    out: list[list[int]] = []
    shared: dict[tuple[Any, ...], int] = {}
    for i, spec in enumerate(specs):
        manager = _manager_for(spec.include_path, spec.task)
        key = (spec.num_fewshot, spec.limit, spec.batch_size or batch_size, spec.include_path, id(manager))
        position = shared.get(key)
        if position is not None and spec.task not in {specs[j].task for j in out[position]}:
            out[position].append(i)
            continue
        out.append([i])
        if spec.task in manager.all_subtasks:
            shared[key] = len(out) - 1
    return out


def _metric_keys(result: dict[str, Any]) -> list[str]:
    """The "metric,filter" keys of one task's (or group's) results, in lm-eval's order."""
    return [k for k, v in result.items() if "," in k and not k.split(",")[0].endswith("_stderr")
            and isinstance(v, (int, float))]


def _default_metric(results: dict[str, Any], task: str) -> Optional[str]:
    """The first metric of the task's metric_list (or a group's aggregate_metric_list)."""
    config = results.get("configs", {}).get(task) or {}
    listed = config.get("metric_list") or []
    if listed:
        return str(listed[0]["metric"])
    return None


def primary_score(results: dict[str, Any], spec: LmEvalSet) -> tuple[float, str, bool, str]:
    """(score on retain's scale, "metric,filter" key, higher is better, how it was read) of a set.

    A group with an aggregate (mmlu, bbh) has its own row in lm-eval's results; a tag without one
    (tydiqa_goldp) is the plain mean of its tasks' scores, as lm-eval would print them.
    """
    table = results["results"]
    own = table.get(spec.task)
    if own is not None and _metric_keys(own):
        members, how = [spec.task], "lm-eval's score of the task"
    else:
        members = [name for name in table if name != spec.task]
        how = f"mean over its {len(members)} tasks"
    wanted = spec.metric
    first = table[members[0]]
    keys = _metric_keys(first)
    if wanted is None:
        default = _default_metric(results, members[0])
        matches = [k for k in keys if k.split(",")[0] == default] if default else []
        key = (matches or keys)[0] if keys else None
    elif "," in wanted:
        key = wanted if wanted in keys else None
    else:
        key = next((k for k in keys if k.split(",")[0] == wanted), None)
    if key is None:
        raise ConfigError(
            f"stream.general ({spec.name}).metric: {wanted!r} is not among the metrics lm-eval reports for "
            f"{members[0]!r} ({', '.join(keys) or 'none'})"
        )
    values = [float(table[m][key]) for m in members if key in table[m]]
    value = sum(values) / len(values)
    metric = key.split(",")[0]
    directions = results.get("higher_is_better", {}).get(members[0], {})
    higher = bool(directions.get(metric, True))
    scaled = value if metric in UNSCALED_METRICS or "perplexity" in metric else 100.0 * value
    return scaled, key, higher, how


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def score_row(
    model: Any, tokenizer: Any, specs: Sequence[LmEvalSet], batch_size: int, seed: int,
    generation: Optional[dict[str, Any]] = None, backend: str = "default",
) -> tuple[list[float], dict[str, Any]]:
    """Every lm-eval set on the model: (scores, the row's record: per set its score and metric,
    per lm-eval call its settings and lm-eval's full results)."""
    scores: list[float] = [0.0] * len(specs)
    sets: list[dict[str, Any]] = [{}] * len(specs)
    records = []
    for number, members in enumerate(calls(specs, batch_size)):
        started = time.perf_counter()
        group = [specs[i] for i in members]
        results = evaluate_sets(model, tokenizer, group, batch_size, seed, generation, backend)
        for i in members:
            score, key, higher, how = primary_score(results, specs[i])
            scores[i] = score
            sets[i] = {"name": specs[i].name, "task": specs[i].task, "metric": key, "higher_is_better": higher,
                       "score": score, "read_as": how, "call": number}
        records.append({
            "sets": [specs[i].name for i in members], "settings": asdict(group[0]) | {"task": [s.task for s in group]},
            "seed": seed, "seconds": round(time.perf_counter() - started, 3),
            "lm_eval_version": results.get("lm_eval_version"),
            "results": _jsonable({k: results.get(k) for k in ("results", "groups", "group_subtasks", "configs",
                                                               "versions", "n-shot", "higher_is_better",
                                                               "n-samples", "config")}),
        })
    return scores, {"sets": sets, "calls": records}


_GROUP: list[Any] = []


def _wait_group() -> Any:
    """A gloo group with a long timeout, made once (every process reaches the first row together)."""
    import torch.distributed as dist  # noqa: PLC0415

    if not _GROUP:
        _GROUP.append(dist.new_group(backend="gloo", timeout=WAIT_TIMEOUT))
    return _GROUP[0]


def score_general_row(ctx: Any, specs: Sequence[LmEvalSet], row: int) -> tuple[list[float], dict[str, Any]]:
    """The lm-eval sets' scores for general row ``row`` on every process: process 0 scores and
    writes ``general/lm_eval_row<row>.json``; the others receive its scores (see the module's
    docstring for why).

    With several processes, generation is told that no other process generates alongside
    (``synced_gpus=False``): transformers turns synchronisation on by itself for an FSDP-managed
    model or under ZeRO-3, and would then all-reduce once per token with processes that are
    waiting elsewhere (a hang, seen under FSDP on two processes). Inside the runner's
    ``full_parameters`` a forward holds no collective, so process 0 may run alone.
    """
    from retain.models.kinds import eval_mode  # noqa: PLC0415

    if ctx.kind not in LM_BACKENDS:
        raise ConfigError(
            f"stream.general: lm-eval sets ({', '.join(s.name for s in specs)}) score a language model; "
            f"a {ctx.kind} model produces no text for them (use retain's own held-out sets)"
        )
    accelerator = ctx.accelerator
    payload: Any = None
    started = time.perf_counter()
    several = accelerator.num_processes > 1
    group = _wait_group() if several else None  # made by every process before process 0 scores
    if accelerator.is_main_process:
        model = ctx.unwrapped_model()
        with eval_mode(model):
            try:
                payload = score_row(model, ctx.tokenizer, specs, ctx.config.eval.batch_size, ctx.config.seed,
                                    {"synced_gpus": False} if several else None, LM_BACKENDS[ctx.kind])
            except Exception as exc:  # noqa: BLE001 - the others must not wait for scores that never come
                payload = exc
    if several:
        import torch.distributed as dist  # noqa: PLC0415

        box = [payload if accelerator.is_main_process else None]
        dist.broadcast_object_list(box, src=0, group=group)
        payload = box[0]
    if isinstance(payload, BaseException):
        if accelerator.is_main_process:
            raise payload
        raise RuntimeError(f"lm-eval scoring failed on process 0: {payload}")
    scores, record = payload
    if accelerator.is_main_process:
        from retain.reporting.run_folder import write_json_atomic  # noqa: PLC0415

        folder = Path(ctx.run_dir) / RESULTS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / f"lm_eval_row{row}.json", {"row": row, **record})
    shown = ", ".join(f"{r['name']}={s:.1f} ({r['metric']})" for r, s in zip(record["sets"], scores))
    ctx.logger.info("lm-eval general sets: %s  [%.1fs]", shown, time.perf_counter() - started)
    return scores, record


def is_lm_eval_task(task: Any) -> bool:
    return isinstance(task, LmEvalTask)


def general_row(ctx: Any, general: Any, own_scores: Sequence[Optional[float]]) -> list[Optional[float]]:
    """The next general row: retain's own sets' scores (``own_scores``, in stream order) with the
    lm-eval sets' scores in their places. The lm-eval sets' recorded metric and direction follow
    what lm-eval reported (known once scored)."""
    tasks = list(ctx.stream.general)
    specs = [t.spec for t in tasks if is_lm_eval_task(t)]
    if not specs:
        return list(own_scores)
    scores, record = score_general_row(ctx, specs, len(general.rows))
    lm_scores, own, row = iter(zip(scores, record["sets"])), iter(own_scores), []
    for k, task in enumerate(tasks):
        if not is_lm_eval_task(task):
            row.append(next(own))
            continue
        score, record = next(lm_scores)
        task.spec.higher_is_better = record["higher_is_better"]
        general.higher_is_better[k] = record["higher_is_better"]
        if general.metrics:
            general.metrics[k] = task.metric = METRIC_PREFIX + record["metric"]
        row.append(score)
    return row


__all__ = [
    "ENTRY_KEY", "INSTALL_HINT", "LmEvalEntry", "LmEvalSet", "LmEvalTask", "PRESETS", "build_lm_eval_sets",
    "calls", "evaluate_sets", "general_entries", "general_row", "is_lm_eval_entry", "is_lm_eval_task", "lm_eval_tasks", "primary_score",
    "score_row",
]
