"""Typed, validated run configuration.

A run is described by one YAML file (or a dict from Python) plus ``key=value`` overrides. Every
section is a dataclass whose fields carry help text; unknown keys and wrong types are rejected with
the dotted path of the key, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml

from retain.config_aliases import canonical_override, check_override_aliases, normalise_aliases
from retain.errors import ConfigError


def option(
    text: str,
    default: Any = dataclasses.MISSING,
    factory: Any = dataclasses.MISSING,
    *,
    low: Optional[float] = None,
    high: Optional[float] = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: Optional[tuple[Any, ...]] = None,
) -> Any:
    """A dataclass field with help text (shown by `retain list`) and, optionally, its valid values.

    ``low``/``high`` bound a number (inclusive unless ``low_open``/``high_open``); ``choices`` lists
    the accepted values. They are checked by :func:`check_options` wherever the dataclass is built
    from user input, so each key's range is declared once, next to its help text.
    """
    metadata: dict[str, Any] = {"help": text}
    if low is not None or high is not None:
        metadata["range"] = (low, high, low_open, high_open)
    if choices is not None:
        metadata["choices"] = tuple(choices)
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


def describe_range(low: Optional[float], high: Optional[float], low_open: bool, high_open: bool) -> str:
    """'in [0, 1)', '>= 0', '> 0' ... for messages and `retain list`."""
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    return f"{'<' if high_open else '<='} {high:g}"


def describe_valid(f: dataclasses.Field) -> str:
    """The declared valid values of a field ('' when none): shown by `retain list --config`."""
    parts = []
    if "range" in f.metadata:
        parts.append(describe_range(*f.metadata["range"]))
    if "choices" in f.metadata:
        choices = f.metadata["choices"]
        shown = " | ".join(str(c) for c in choices if c is not None)
        parts.append(f"one of {shown}" + (" or null" if None in choices else ""))
    return ", ".join(parts)


def _check_value(value: Any, f: dataclasses.Field, path: str) -> None:
    choices = f.metadata.get("choices")
    if choices is not None and value not in choices:
        shown = ", ".join(str(c) for c in choices if c is not None)
        raise ConfigError(f"{path}: {value!r} is not one of {shown}")
    bounds = f.metadata.get("range")
    if bounds is not None and isinstance(value, (list, tuple)):
        # A list of numbers (e.g. AdamW betas): the range holds for each item.
        for i, item in enumerate(value):
            _check_value(item, dataclasses.field(metadata={"range": bounds}), f"{path}[{i}]")
        return
    if bounds is None or value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    low, high, low_open, high_open = bounds
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if below or above or value != value:  # value != value: NaN
        raise ConfigError(f"{path}: must be {describe_range(*bounds)}, got {value}")


def check_options(obj: Any, path: str = "") -> None:
    """Check every field of the dataclass ``obj`` against its declared range and choices."""
    for f in dataclasses.fields(obj):
        _check_value(getattr(obj, f.name), f, f"{path}.{f.name}" if path else f.name)


@dataclass
class LoraConfig:
    enabled: bool = option("Train a PEFT LoRA adapter instead of all weights.", False)
    r: int = option("LoRA rank.", 8, low=1)
    alpha: int = option("LoRA alpha (scaling = alpha / r).", 16, low=0, low_open=True)
    dropout: float = option("Dropout on the LoRA input.", 0.05, low=0.0, high=1.0, high_open=True)
    target_modules: Optional[list[str]] = option(
        "Module names to adapt; null = a sensible default per architecture (attention projections).",
        None,
    )


@dataclass
class ModelConfig:
    name_or_path: str = option(
        "A Hugging Face model name or local path, or 'builtin:<name>' for a tiny model built from a "
        "config (builtin:tiny-llama, builtin:tiny-gpt2, builtin:tiny-t5, builtin:tiny-bert, "
        "builtin:tiny-mixtral).",
        "builtin:tiny-llama",
    )
    kind: Optional[str] = option(
        "causal | seq2seq | classifier; null = inferred from the model's config.", None,
        choices=(None, "causal", "seq2seq", "classifier"),
    )
    tokenizer: Optional[str] = option("Tokenizer name or path; null = same as the model.", None)
    is_decoder: Optional[bool] = option(
        "Load with a causal attention mask (transformers' is_decoder). An encoder-only checkpoint "
        "(BERT family, e.g. MiniLM-L6) loaded with kind: causal becomes a left-to-right LM whose "
        "output layer is tied to the embeddings; null = true exactly in that case.",
        None,
    )
    dtype: str = option(
        "Weight dtype: auto | float32 | bfloat16 | float16. auto: bfloat16 when train.mixed_precision "
        "is bf16 (weights, gradients and AdamW moments all bf16: no fp32 copy of the model, half the "
        "memory, small updates may round away), else float32; float32 with bf16 mixed precision keeps "
        "fp32 master weights under bf16 autocast.", "auto",
        choices=("auto", "float32", "bfloat16", "float16"),
    )
    chat_template: Optional[str] = option(
        "Causal models: render each prompt as a user turn with the tokenizer's apply_chat_template. "
        "'tokenizer' = the tokenizer's own template; other text = a Jinja chat template; null = plain prompts.",
        None,
    )
    router_aux_loss: bool = option(
        "Mixture-of-experts causal LMs whose config has a router load-balancing loss "
        "(output_router_logits and router_aux_loss_coef: Mixtral, Qwen2-MoE, Qwen3-MoE): train on "
        "task loss + router_aux_loss_coef * aux_loss (transformers' output_router_logits=True); "
        "false trains on the task loss alone. No effect on other models.",
        True,
    )
    lora: LoraConfig = option("LoRA settings.", factory=LoraConfig)


@dataclass
class DataSourceConfig:
    """One custom task: where its data lives and how to read it."""

    name: str = option("Task name (unique in the stream).", "")
    format: str = option("alpaca | olora | trace | hf | superni | text (see `retain list`).", "alpaca")
    train: Optional[str] = option("Train file or folder (format dependent).", None)
    eval: Optional[str] = option("Evaluation file or folder.", None)
    path: Optional[str] = option("Task folder (olora / trace) or dataset name/path (hf).", None)
    metric: Optional[str] = option(
        "accuracy | rouge_l | perplexity | bleu | sari | edit_sim | accuracy_trace | bleu_trace | rouge_l_trace | "
        "sari_trace | edit_sim_trace (TRACE's own definitions), or an import path 'package.module:Class' "
        "(a retain.evaluation.metrics.Metric subclass); null = inferred from the answers.", None,
    )
    fields: dict[str, str] = option(
        "Field-name mapping, e.g. {instruction: question, input: context, output: answer}.",
        factory=dict,
    )
    infer_labels: Optional[bool] = option(
        "Infer a label set from the answers (records outside it are left out); false: open answers, "
        "nothing left out (numeric QA); null = stream.infer_labels.", None,
    )
    template: Optional[str] = option(
        "Prompt template: a format string over the record's own fields, e.g. 'Review: {sentence}\\nSentiment:' "
        "(formats alpaca, trace, hf); null = the format's prompt.", None,
    )
    hf_config: Optional[str] = option(
        "Dataset config / subset (format hf), e.g. sst2 with path: glue; for a folder of saved datasets, "
        "the sub-folder.", None,
    )
    hf_train_split: str = option("Split name for training (format hf).", "train")
    hf_eval_split: str = option("Split name for evaluation (format hf).", "validation")


@dataclass
class StreamConfig:
    benchmark: str = option(
        "demo | standard-cl | long-sequence | trace | superni | custom (see `retain list`).", "demo"
    )
    order: Optional[int] = option(
        "Task order of the benchmark (standard-cl: 1-3, long-sequence: 4-6, trace: 7-8, superni: 9-12).", None,
        low=1, high=12,
    )
    data_root: Optional[str] = option(
        "Folder holding train/ and dev/ (and optionally test/) of the benchmark.", None
    )
    eval_split: str = option("Split evaluated after every task: dev | test.", "dev", choices=("dev", "test"))
    tasks: list[Any] = option(
        "custom: a list of task sources; benchmark: an optional subset/reordering of task names.",
        factory=list,
    )
    general: Union[list[Any], str] = option(
        "Held-out general-ability evaluation sets, scored before training and after every task: "
        "sources in the form of custom tasks, lm-eval tasks ({lm_eval: mmlu, num_fewshot: 5, limit: 100}; "
        "needs retain[lm-eval]; keys: `retain list --config`, README) or the preset seekr-ga (SEEKR's six "
        "general-ability benchmarks).",
        factory=list,
    )
    lm_eval_include_path: Optional[str] = option(
        "Folder of custom lm-eval task YAML files for the lm-eval entries of stream.general that set no "
        "include_path of their own; null = lm-eval's built-in tasks only.", None,
    )
    infer_labels: bool = option(
        "Infer each task's label set from its answers when they look like classes (few, short, repeated, "
        "not numbers, covering the evaluation answers); records outside it are left out. false: no label "
        "sets, no records left out.", True,
    )
    max_train_per_task: Optional[int] = option("Cap on train examples per task (seeded sample).", None, low=1)
    max_eval_per_task: Optional[int] = option("Cap on evaluation examples per task (seeded sample).", None, low=1)
    max_source_length: int = option("Prompt tokens kept (longer prompts are truncated from the left and counted).", 256, low=1)
    max_target_length: int = option("Target tokens kept (longer targets are truncated and counted).", 32, low=1)
    demo_tasks: int = option("Number of generated tasks in the demo stream.", 4, low=1, high=8)
    demo_train_size: int = option("Train examples per generated demo task.", 192, low=1)
    demo_eval_size: int = option("Evaluation examples per generated demo task.", 64, low=1)


@dataclass
class TrainConfig:
    epochs: float = option("Epochs per task.", 1.0, low=0.0, low_open=True)
    task_epochs: Union[list[float], str, None] = option(
        "Epochs of each task, in stream order, overriding epochs (e.g. [5, 5, 10]); 'published': the "
        "benchmark's published schedule (trace and superni orders 9-10: SEEKR's, README); null = epochs for every task.",
        None,
    )
    batch_size: int = option("Micro-batch size per device.", 8, low=1)
    grad_accum: int = option("Micro-batches per optimizer step.", 1, low=1)
    lr: float = option("Peak learning rate.", 1e-4, low=0.0, low_open=True)
    weight_decay: float = option("AdamW weight decay.", 0.0, low=0.0)
    betas: list[float] = option("AdamW betas.", factory=lambda: [0.9, 0.999], low=0.0, high=1.0, high_open=True)
    scheduler: str = option(
        "constant | linear | cosine (after the warm-up). Linear decay by default: at a constant rate a "
        "pretrained encoder learns its later tasks worse (docs/results.md, full size).", "linear",
        choices=("constant", "linear", "cosine"),
    )
    warmup_steps: int = option("Warm-up optimizer steps per task.", 0, low=0)
    warmup_ratio: float = option(
        "Warm-up as a share of each task's optimizer steps (used when warmup_steps is 0). Each task "
        "starts with new, untrained output rows whose large gradients, at the full rate, wipe out a "
        "pretrained model's features (docs/results.md, full size): 0.1 by default.", 0.1,
        low=0.0, high=1.0, high_open=True,
    )
    max_grad_norm: Optional[float] = option("Gradient clipping norm; null = no clipping.", 1.0, low=0.0, low_open=True)
    reset_optimizer_per_task: bool = option(
        "A new optimizer and schedule per task (true) or one carried across tasks (false).", True
    )
    mixed_precision: str = option(
        "no | bf16 | fp16 (Accelerate mixed precision).", "no", choices=("no", "bf16", "fp16")
    )
    tf32: Optional[bool] = option(
        "TensorFloat-32 in CUDA matmuls (Ampere and later GPUs): fp32 weights and optimizer, matmul "
        "inputs rounded to a 10-bit mantissa, several times faster than full fp32 products. true | "
        "false | null (leave PyTorch's setting, which keeps matmuls in full fp32). No effect on the CPU.",
        None,
    )
    gradient_checkpointing: bool = option("Trade compute for memory.", False)
    sharding: str = option(
        "none | fsdp (FSDP2: parameters, gradients and optimizer state sharded over processes) | "
        "zero2 (DeepSpeed ZeRO-2: gradients and optimizer state) | zero3 (DeepSpeed ZeRO-3: also "
        "parameters). Launch with torchrun or accelerate launch; see docs/scale-out.md.",
        "none", choices=("none", "fsdp", "zero2", "zero3"),
    )
    report_to: Union[list[str], str] = option(
        "Trackers (through Accelerate) that get the per-step loss, learning rate and methods' loss terms, "
        "and the matrix after every task: jsonl (steps.jsonl in the run folder) | csv (steps.csv) | "
        "tensorboard (the tensorboard package) | wandb (the wandb package) | none.",
        factory=lambda: ["jsonl"],
    )
    logging_steps: int = option(
        "Optimizer steps between two tracker records of loss, learning rate and method loss terms "
        "(each record holds the means since the last; the last steps of a task are always recorded).",
        10, low=1,
    )
    label_space: Optional[str] = option(
        "Classifier training: the classes each example's loss (and a method's distillation) competes "
        "over: task (its own task's labels) | union (every label of the stream, class-incremental); "
        "null = eval.label_space.",
        None, choices=(None, "task", "union"),
    )


@dataclass
class EvalConfig:
    batch_size: int = option("Evaluation batch size.", 32, low=1)
    before_training: bool = option("Score every task before training (row 0 of the matrix; needed for FWT).", True)
    max_new_tokens: Optional[int] = option("Generation budget; null = longest target of the task + 2.", None, low=1)
    scoring: str = option(
        "generate (greedy decoding, scored by each task's metric) | rank (pick the label with the highest "
        "likelihood: a fast option for label-set tasks).",
        "generate",
        choices=("generate", "rank"),
    )
    label_space: str = option(
        "Classifier kind: 'task' predicts among the evaluated task's labels, 'union' among all "
        "labels of the stream (class-incremental). Also the training loss's classes unless "
        "train.label_space is set.",
        "task",
        choices=("task", "union"),
    )
    cells: str = option(
        "Which matrix cells each row scores: 'needed' (the tasks trained so far plus the next one for "
        "FWT, row 0 in full: every metric's cells, about 40% fewer evaluations on 15 tasks) or 'all' (the "
        "full matrix). Cells not scored are absent (null), never 0.",
        "needed",
        choices=("needed", "all"),
    )
    save_predictions: bool = option("Write predictions per task and row to the run folder.", True)
    single_task_reference: Optional[str] = option(
        "Folder of a finished `single` run on the same tasks: its diagonal a[i][i] becomes the "
        "single-task scores (single_task.json) behind FWT relative to single-task; null = none.",
        None,
    )


REPORT_TO_CHOICES = ("jsonl", "csv", "tensorboard", "wandb", "none")


@dataclass
class OutputConfig:
    """What a run keeps and shows beyond its results: exportable models, trackers, progress bars."""

    keep_task_models: bool = option(
        "Keep an exportable model (save_pretrained weights, or the PEFT adapter, plus the tokenizer) "
        "after every task in models/task-NN/, so that `retain export --after-task N` works for any N; "
        "false keeps only the last task's (each kept model is one more copy of the weights on disk).",
        False,
    )
    progress: bool = option(
        "Progress bars on the terminal (training, evaluation, importance and teacher passes); bars "
        "are never drawn when stderr is not a terminal or RETAIN_PROGRESS=0 is set.",
        True,
    )


@dataclass
class MethodSpec:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


def resolve_dtype(dtype: str, mixed_precision: str) -> str:
    """``model.dtype`` with ``auto`` decided: bf16 weights when bf16 is asked for, else fp32.

    Where ``train.mixed_precision: bf16`` asks for bf16, fp32 weights would make every process
    hold an fp32 copy of the model, its gradients and two fp32 AdamW moments: twice the memory
    of bf16 weights. fp16 keeps fp32 weights (its loss scaler cannot unscale fp16 gradients).
    """
    if dtype != "auto":
        return dtype
    return "bfloat16" if mixed_precision == "bf16" else "float32"


@dataclass
class RunConfig:
    name: str = option("Run name; the run folder is <output_dir>/<name>.", "run")
    output_dir: str = option("Parent folder of run folders.", "runs")
    seed: int = option("Seed for sampling, shuffling, initialisation and dropout.", 42, low=0, high=2**32 - 1)
    model: ModelConfig = option("Model settings.", factory=ModelConfig)
    stream: StreamConfig = option("Task stream settings.", factory=StreamConfig)
    train: TrainConfig = option("Training settings.", factory=TrainConfig)
    eval: EvalConfig = option("Evaluation settings.", factory=EvalConfig)
    output: OutputConfig = option("What the run keeps and shows: task models, trackers, progress bars.", factory=OutputConfig)
    methods: list[Any] = option(
        "Methods in hook order: names or {name: ..., <param>: ...} mappings.",
        factory=lambda: ["seqft"],
    )

    def method_specs(self) -> list[MethodSpec]:
        return parse_method_list(self.methods)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


def parse_method_list(methods: list[Any]) -> list[MethodSpec]:
    specs: list[MethodSpec] = []
    if isinstance(methods, (str, dict)):
        methods = [methods]
    for i, entry in enumerate(methods):
        if isinstance(entry, str):
            specs.append(MethodSpec(entry, {}))
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            params = {k: v for k, v in entry.items() if k != "name"}
            specs.append(MethodSpec(entry["name"], params))
        else:
            raise ConfigError(
                f"methods[{i}]: expected a method name or a mapping with 'name', got {entry!r}"
            )
    if not specs:
        raise ConfigError("methods: the list is empty; name at least one method (e.g. seqft)")
    return specs


# ---------------------------------------------------------------------------------------------
# Building dataclasses from plain data with key-path error messages.


def _coerce_number(value: Any, path: str, tp: type) -> Any:
    """An int or float from YAML or command-line text. Booleans are refused: YAML reads `yes` as
    True, and True silently becoming 1 would hide a typo."""
    number: Any = None
    if not isinstance(value, bool):
        if isinstance(value, (int, float)) and (tp is float or float(value).is_integer()):
            number = tp(value)
        elif isinstance(value, str):
            try:
                number = tp(value)
            except ValueError:
                pass
    if number is not None:
        # NaN or inf is never a sensible setting and would only surface as a crash mid-run.
        if isinstance(number, float) and not math.isfinite(number):
            raise ConfigError(f"{path}: must be a finite number, got {value!r}")
        return number
    raise ConfigError(f"{path}: expected {'an integer' if tp is int else 'a number'}, got {value!r}")


def coerce(value: Any, tp: Any, path: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise a ConfigError naming ``path``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return build_dataclass(tp, value, path)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (item_tp,) = args or (Any,)
        return [coerce(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise ConfigError(f"{path}: expected true or false, got {value!r}")
    if tp is int or tp is float:
        return _coerce_number(value, path, tp)
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def build_dataclass(cls: Any, data: dict[str, Any], path: str = "") -> Any:
    """Build ``cls`` from ``data``; unknown keys are errors that list the known ones."""
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in known:
            raise ConfigError(
                f"{key_path}: unknown key (known keys: {', '.join(sorted(known))})"
            )
        kwargs[key] = coerce(value, hints[key], key_path)
        _check_value(kwargs[key], known[key], key_path)
    return cls(**kwargs)


def _parse_scalar(text: str) -> Any:
    """Parse an override value with YAML rules (numbers, booleans, null, lists)."""
    try:
        return safe_load_yaml(text, "override")
    except ConfigError as exc:
        if "YAML aliases" in str(exc):
            raise
        return text


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested dict (a copy).

    Hugging Face key names (``learning_rate=...``, see :mod:`retain.config_aliases`) set their
    canonical key, in ``data`` as in the overrides.
    """
    data = normalise_aliases(json.loads(json.dumps(data)))
    check_override_aliases(overrides)
    for item in map(canonical_override, overrides):
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. train.lr=1e-4)")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {key}: {part!r} is not a section")
            node = child
        node[parts[-1]] = _parse_scalar(text)
    return data


# A config is a few hundred values; YAML aliases may repeat a subtree, but a file whose expanded
# size passes these caps is an alias bomb (each level multiplies the one below) and is refused
# before anything walks or copies it.
MAX_YAML_ALIASES = 100
MAX_CONFIG_NODES = 100_000


class _CappedLoader(yaml.SafeLoader):
    """A safe loader that refuses more than MAX_YAML_ALIASES alias references."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self.alias_count = getattr(self, "alias_count", 0) + 1
            if self.alias_count > MAX_YAML_ALIASES:
                raise ConfigError(f"more than {MAX_YAML_ALIASES} YAML aliases (*name); write the values out")
        return super().compose_node(parent, index)


def _expanded_size(data: Any, budget: int) -> int:
    """Nodes in ``data`` with shared subtrees counted each time (stops counting past ``budget``)."""
    count = 0
    stack = [data]
    while stack and count <= budget:
        node = stack.pop()
        count += 1
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return count


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: where and what (PyYAML's own message spans several, with a caret drawing)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" if mark is not None else problem


def safe_load_yaml(text: str, source: str) -> Any:
    """Parse YAML with the safe loader and the alias caps; errors name ``source``."""
    try:
        data = yaml.load(text, Loader=_CappedLoader)  # noqa: S506  (a SafeLoader subclass)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({_yaml_problem(exc)})") from None
    if _expanded_size(data, MAX_CONFIG_NODES) > MAX_CONFIG_NODES:
        raise ConfigError(f"{source}: expands to more than {MAX_CONFIG_NODES} values (YAML aliases); write the values out")
    return data


def load_config_dict(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the config ({exc})") from None
    data = safe_load_yaml(text, str(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return normalise_aliases(data, str(path))


# A run name becomes one folder under output_dir: one plain path component, nothing that a shell
# or the file system reads specially (no '.', '..', separators or leading dash).
_RUN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+=@-]{0,127}")


def check_run_name(name: str) -> None:
    """Refuse a run name that is not a plain folder name (it would place or delete files elsewhere)."""
    if not _RUN_NAME.fullmatch(name) or name in (".", ".."):
        raise ConfigError(
            f"name: {name!r} is not a plain folder name (use letters, digits and _ . + = @ -, "
            "starting with a letter, digit or _; at most 128 characters)"
        )


def _check_sections(obj: Any, path: str = "") -> None:
    """Declared ranges and choices of every field, nested sections included (defaults too)."""
    check_options(obj, path)
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_sections(value, f"{path}.{f.name}" if path else f.name)


def _check_report_to(config: RunConfig) -> None:
    """One name or a list (as HF's TrainingArguments accept); stored as a list."""
    if isinstance(config.train.report_to, str):
        config.train.report_to = [config.train.report_to]
    report_to = config.train.report_to
    for i, name in enumerate(report_to):
        if name not in REPORT_TO_CHOICES:
            raise ConfigError(f"train.report_to[{i}]: {name!r} is not one of {', '.join(REPORT_TO_CHOICES)}")
    if "none" in report_to and len(report_to) > 1:
        raise ConfigError(f"train.report_to: 'none' cannot be combined with other trackers (got {report_to})")
    if len(set(report_to)) != len(report_to):
        raise ConfigError(f"train.report_to: a tracker is listed twice ({report_to})")


#: stream.order's range per benchmark (the declared [1, 12] spans them all); any other benchmark: [1, 6].
_ORDER_RANGES: dict[str, tuple[int, int]] = {"trace": (7, 8), "superni": (9, 12)}


def _check_order(stream: StreamConfig) -> None:
    """Orders 7-8 are the TRACE stream's, 9-12 the SuperNI stream's: for the other benchmarks the range stays [1, 6]."""
    if stream.order is None:
        return
    low, high = _ORDER_RANGES.get(stream.benchmark, (1, 6))
    if not low <= stream.order <= high:
        raise ConfigError(f"stream.order: must be in [{low}, {high}], got {stream.order} (benchmark {stream.benchmark})")


def validate(config: RunConfig) -> RunConfig:
    """Declared ranges and choices, then the checks that span fields; method checks happen in the engine."""
    _check_sections(config)
    _check_order(config.stream)
    if len(config.train.betas) != 2:
        raise ConfigError(f"train.betas: expected two numbers, got {config.train.betas}")
    check_run_name(config.name)
    _check_report_to(config)
    config.method_specs()
    return config


def make_config(
    source: str | Path | dict[str, Any] | RunConfig | None = None,
    overrides: Optional[list[str]] = None,
) -> RunConfig:
    """Build a validated RunConfig from a YAML path, a dict or an existing RunConfig."""
    if isinstance(source, RunConfig):
        data = source.to_dict()
    elif source is None:
        data = {}
    elif isinstance(source, dict):
        data = normalise_aliases(source)
    else:
        data = load_config_dict(source)
    if overrides:
        data = apply_overrides(data, overrides)
    config = build_dataclass(RunConfig, data)
    return validate(config)


def describe_fields(cls: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, help) for every field: used by `retain list --config`."""
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe_fields(tp, key + "."))
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        valid = describe_valid(f)
        help_text = f.metadata.get("help", "") + (f" Valid: {valid}." if valid else "")
        rows.append((key, default, help_text))
    return rows
