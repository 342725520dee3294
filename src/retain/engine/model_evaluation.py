"""``retain eval``: score a model trained elsewhere on a stream's tasks and general sets, no training.

The zero-shot row of a published model, or the row of a model another tool fine-tuned, is scored
exactly as a run scores its rows (the same encoder, metrics, answer post-processing and files), so
it can sit beside a run's matrix. The folder it writes is a run folder with one row, labelled
:data:`EVALUATED_ROW`, and ``evaluation.json`` saying which model (and adapter) was scored; it has
no checkpoint and cannot be resumed or exported.

The model is a path or a Hub name (``--model``, else the config's ``model.name_or_path``); an
adapter folder (PEFT, e.g. from ``retain export``) is loaded on top of it, and without ``--model``
its own base (``base_model_name_or_path``) is the model.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Optional

from retain.config import ModelConfig, RunConfig, make_config
from retain.data.types import Stream
from retain.engine.preflight import Prepared, prepare
from retain.errors import ConfigError
from retain.reporting.run_folder import EVALUATION_FILE

#: the label of the one row an evaluation writes
EVALUATED_ROW = "evaluated (no training)"


@dataclass(frozen=True)
class EvaluatedModel:
    """What ``retain eval`` scored, as evaluation.json records it."""

    model: str
    adapter: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def adapter_base(adapter: str) -> str:
    """The base model an adapter folder names, checked to be a PEFT adapter folder."""
    folder = Path(adapter).expanduser()
    config_file = folder / "adapter_config.json"
    if not config_file.is_file():
        raise ConfigError(f"--adapter: {folder} has no adapter_config.json (expected a PEFT adapter folder, e.g. from retain export)")
    try:
        base = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--adapter: {config_file} is not a JSON object ({exc})") from None
    if not base:
        raise ConfigError(f"--adapter: {config_file} names no base_model_name_or_path; give the base with --model")
    return str(base)


def evaluation_config(
    source: Any, overrides: Optional[list[str]] = None, model: Optional[str] = None,
    adapter: Optional[str] = None, name: Optional[str] = None,
) -> tuple[RunConfig, EvaluatedModel]:
    """The config of an evaluation: the source's stream and eval settings, the model to score,
    one row over every task, and its own folder (``<name>-eval`` unless ``name`` is given)."""
    config = make_config(source if not isinstance(source, str) else Path(source), overrides)
    if adapter is not None:
        model = model or adapter_base(adapter)
    if model:
        config.model = replace(config.model, name_or_path=model)
    # An adapter is loaded as it was saved; the config's LoRA settings are for training only.
    config.model = replace(config.model, lora=replace(config.model.lora, enabled=False))
    config.name = name or f"{config.name}-eval"
    config.eval = replace(config.eval, before_training=True, cells="all")
    return config, EvaluatedModel(config.model.name_or_path, str(Path(adapter).expanduser()) if adapter else None)


def _check_classifier_labels(model_config: ModelConfig, stream: Stream) -> None:
    """A saved classifier is scored with its own head: its classes must be the stream's, in order
    (loading would otherwise rename its rows to the stream's labels, silently)."""
    from transformers import AutoConfig  # noqa: PLC0415

    if model_config.name_or_path.startswith("builtin:"):
        return
    saved = AutoConfig.from_pretrained(model_config.name_or_path)
    classes = [saved.id2label[i] for i in sorted(saved.id2label)]
    wanted = stream.all_labels()
    if classes != wanted:
        raise ConfigError(
            f"model.name_or_path: {model_config.name_or_path}'s classifier head has the classes "
            f"{', '.join(map(str, classes))}, the stream's tasks {', '.join(wanted)} (same classes in the same order needed)"
        )


def evaluation_text(matrix_text: str, row: list[Optional[float]], general: Any) -> str:
    """What ``retain eval`` prints: the row, its mean over tasks, and the general sets' scores
    (the continual-learning metrics need trained rows: the report lists them as undefined)."""
    scored = [score for score in row if score is not None]
    lines = [matrix_text, "", f"mean over the {len(scored)} tasks: {sum(scored) / max(len(scored), 1):.2f}"]
    if general is not None and general.rows:
        lines.append("general sets: " + ", ".join(
            f"{name} {score:.2f}" for name, score in zip(general.names, general.rows[0]) if score is not None
        ))
    return "\n".join(lines)


def _runner_class() -> type:
    """The evaluation runner (defined on first use: it imports torch through the engine)."""
    from retain.engine.runner import ContinualRunner, RunResult, empty_general, empty_matrix  # noqa: PLC0415
    from retain.engine.run_state import RunState  # noqa: PLC0415
    from retain.evaluation.cl_metrics import compute_cl_metrics  # noqa: PLC0415
    from retain.models.kinds import model_kind  # noqa: PLC0415
    from retain.models.loading import LoadedModel, load_model  # noqa: PLC0415
    from retain.reporting.report import format_matrix_text  # noqa: PLC0415
    from retain.reporting.scoring import scoring_lines  # noqa: PLC0415

    class ModelEvaluation(ContinualRunner):
        """One row over every task (and the general sets) of a loaded model; nothing trained."""

        def __init__(self, config: RunConfig, evaluated: EvaluatedModel, **kwargs: Any) -> None:
            super().__init__(config, **kwargs)
            self.evaluated = evaluated

        def _make_methods(self) -> list[Any]:
            return []

        def _load_model(self, model_config: ModelConfig, stream: Stream, seed: int) -> LoadedModel:
            if model_kind(model_config.kind).classes:  # a head of its own: its classes must fit
                _check_classifier_labels(model_config, stream)
            loaded = load_model(model_config, stream, seed)
            if self.evaluated.adapter is not None:
                from peft import PeftModel  # noqa: PLC0415

                try:
                    loaded.model = PeftModel.from_pretrained(loaded.model, self.evaluated.adapter)
                except (OSError, ValueError, RuntimeError, KeyError) as exc:
                    raise ConfigError(f"--adapter: cannot load {self.evaluated.adapter} onto {model_config.name_or_path}: {exc}") from None
            return loaded

        def _run(self) -> RunResult:
            ctx, _, folder = self._build()
            stream = ctx.stream
            folder.write_evaluation(self.evaluated.to_dict())
            state = self.run_state = RunState(empty_matrix(stream, has_initial_row=True), empty_general(stream))
            matrix, general = state.matrix, state.general
            adapter = f" + adapter {self.evaluated.adapter}" if self.evaluated.adapter else ""
            ctx.logger.info(
                "evaluation %s: %s model %s%s, no training, %d tasks (%s)", self.config.name, ctx.kind,
                self.evaluated.model, adapter, len(stream.tasks), ", ".join(stream.task_names),
            )
            for line in scoring_lines(stream):
                ctx.logger.info("%s", line)
            self._score_untrained(ctx, state, folder, EVALUATED_ROW)
            metrics = compute_cl_metrics(matrix, general=general)
            folder.write_metrics(metrics)
            self._write_report(ctx, [])
            text = evaluation_text(format_matrix_text(matrix), matrix.rows[0], general)
            return RunResult(
                ctx.run_dir, matrix, metrics, text, ctx.accelerator.is_main_process,
                model=ctx.unwrapped_model(), tokenizer=ctx.tokenizer,
            )

    return ModelEvaluation


def prepare_evaluation(
    source: Any, overrides: Optional[list[str]] = None, model: Optional[str] = None,
    adapter: Optional[str] = None, name: Optional[str] = None, overwrite: bool = False,
) -> tuple[Prepared, EvaluatedModel]:
    """The checks of an evaluation (config, data, folder), done before torch is imported."""
    config, evaluated = evaluation_config(source, overrides, model, adapter, name)
    return prepare(config, overwrite=overwrite), evaluated


def evaluate_model(
    source: Any, overrides: Optional[list[str]] = None, model: Optional[str] = None,
    adapter: Optional[str] = None, name: Optional[str] = None, overwrite: bool = False, quiet: bool = False,
    prepared: Optional[tuple[Prepared, EvaluatedModel]] = None,
) -> Any:
    """Score ``model`` (or the config's model), with ``adapter`` if given, on the config's stream:
    one row of every task and the general sets, written to ``<output_dir>/<name>`` (a
    :class:`~retain.engine.runner.RunResult`)."""
    checked, evaluated = prepared or prepare_evaluation(source, overrides, model, adapter, name, overwrite)
    runner = _runner_class()(
        checked.config, evaluated, quiet=quiet, overwrite=checked.overwrite, stream=checked.stream,
    )
    return runner.run()


__all__ = ["EVALUATED_ROW", "EvaluatedModel", "adapter_base", "evaluate_model", "evaluation_config", "prepare_evaluation"]
