"""The continual run: build everything, then for each phase train, evaluate, checkpoint.

The accuracy matrix is written after every phase, and a checkpoint is swapped in atomically right
after it, so ``retain run --resume`` continues from the last completed phase and ends with the same
matrix as an uninterrupted run (each phase reseeds from the run seed and its index, so nothing
depends on RNG state carried through the crash). Where the run stands (the matrices, general rows,
step counters and method states) is one :class:`~retain.engine.run_state.RunState`: the checkpoint
writes it and a resume reads it back.

Preparation contract (data parallelism now, sharded back-ends build on it):

1. At set-up the model is only placed (``prepare_model(evaluation_mode=True)``: device and
   mixed-precision forward, no parallel wrapper); ``on_setup`` hooks see the bare model.
2. A phase starts with ``on_phase_start``: a method that adds or unfreezes parameters does it
   there, *before* preparation. Then the batch plan is built for the whole run and cut to this
   process's share (:func:`~retain.engine.loop.local_plan`).
3. When the phase needs a fresh optimizer, the model is unwrapped to its bare form and prepared
   *together with* the new optimizer in one ``accelerator.prepare`` call
   (:mod:`retain.engine.preparation`), so the wrapper knows every trainable parameter. A carried
   optimizer keeps the model it was prepared with. The LR schedule stays with the engine.
4. When a task ends and the next one builds its own optimizer, the finished optimizer (and its
   schedule, and later the model wrapper it was prepared with) is released from the accelerator,
   so its state is freed instead of accumulating task after task.
5. Checkpoints take the full state dict through ``accelerator.get_state_dict`` on every process
   (a collective under sharding) and only the main process writes it; every run-folder file has
   that one writer.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from accelerate import Accelerator
from accelerate.utils import set_seed

from retain.config import ModelConfig, RunConfig, resolve_dtype
from retain.data.benchmarks import build_stream
from retain.engine.task_epochs import phase_epochs, resolve_task_epochs
from retain.data.types import Stream
from retain.data.collate import Encoder
from retain.engine import checkpoint as ckpt
from retain.engine.accelerate_private import reset_run_state, start_accumulation_window
from retain.engine.context import RunContext
from retain.engine.evaluate import evaluate_tasks, on_scoring_device
from retain.engine.hooks import HookDispatcher
from retain.engine.matmul_precision import tf32_matmuls
from retain.engine.loop import local_plan, new_task_plan, optimizer_steps, run_extra_steps, train_phase
from retain.engine.optim import build_optimizer, build_scheduler
from retain.engine.preparation import bare_model, prepare_task, release
from retain.engine.sharding import (
    build_accelerator, distributed_mode, forget_engine, full_state_dict, is_sharded, requested_mode,
)
from retain.engine.preflight import Prepared, check_run_folder, prepare, read_saved_config, resume_changes
from retain.errors import RetainError
from retain.evaluation.cells import cells_to_evaluate
from retain.exporting.task_model import save_task_model, task_model_dir
from retain.evaluation.cl_metrics import AccuracyMatrix, GeneralScores, compute_cl_metrics, never_learned
from retain.evaluation.lm_eval_general import general_row, is_lm_eval_task
from retain.engine.run_state import RunState
from retain.engine.state import Phase, TrainingState
from retain.engine.progress import bars_allowed
from retain.engine.grad_norms import clipped_sources_warning
from retain.engine.step_log import StepLog
from retain.engine.trackers import build_trackers, flat_config, set_resume_step
from retain.methods.base import Method
from retain.methods.registry import check_combination, instantiate
from retain.models.loading import LoadedModel, load_model
from retain.reporting.reference import read_single_task_reference
from retain.reporting.metric_text import never_learned_text
from retain.reporting.report import format_matrix_text, format_metrics_text
from retain.reporting.scoring import scoring_lines
from retain.data.chat import configure_chat_template
from retain.reporting.guard import RunLock, create_run_folder, discard_replaced, restore_replaced, set_aside_run_folder
from retain.log import make_logger
from retain.reporting.run_folder import NoWrites, RunFolder


@dataclass
class RunResult:
    run_dir: Path
    matrix: AccuracyMatrix
    metrics: dict[str, Any]
    text: str
    is_main: bool = True  # False on the other processes of a data-parallel run
    #: classifier runs scored within task labels: the same models scored among all the stream's
    #: labels (class-incremental), and their metrics; None otherwise
    union_matrix: Optional[AccuracyMatrix] = None
    union_metrics: Optional[dict[str, Any]] = None
    #: the trained model after the last phase run (unwrapped from Accelerate; a PEFT model under LoRA)
    #: and its tokenizer, ready for ``generate`` or ``save_pretrained``; ``retain export`` writes
    #: the same model from the run folder
    model: Any = None
    tokenizer: Any = None


def _make_logger(run_dir: Optional[Path], quiet: bool) -> logging.Logger:
    """The run's logger: run.log in the run folder (None: no file) and stderr unless quiet."""
    name = f"retain.run.{run_dir.resolve() if run_dir else id(quiet)}"
    return make_logger(name, run_dir / "run.log" if run_dir is not None else None, quiet)


def _answer_processing(stream: Stream) -> list[str]:
    """Each task's answer post-processing rule for the matrix file ([] when no task has one)."""
    rules = [task.answer_processing for task in stream.tasks]
    return rules if any(rules) else []


def _default_phases(num_tasks: int, names: list[str]) -> list[Phase]:
    return [Phase(name=names[i], task_indices=[i]) for i in range(num_tasks)]


def empty_matrix(stream: Stream, has_initial_row: bool) -> AccuracyMatrix:
    """The accuracy matrix of ``stream`` before its first row."""
    return AccuracyMatrix(
        task_names=stream.task_names,
        higher_is_better=[t.higher_is_better for t in stream.tasks],
        row_labels=[], rows=[], has_initial_row=has_initial_row,
        phase_task_index=[], task_metrics=[t.metric for t in stream.tasks],
        task_answer_processing=_answer_processing(stream),
    )


def empty_general(stream: Stream) -> Optional[GeneralScores]:
    """The general-ability scores of ``stream`` before their first row (None: no general sets)."""
    if not stream.general:
        return None
    return GeneralScores(
        names=[g.name for g in stream.general],
        higher_is_better=[g.higher_is_better for g in stream.general],
        rows=[], metrics=[g.metric for g in stream.general],
    )


class ContinualRunner:
    """Runs one experiment end to end (see the module docstring)."""

    def __init__(
        self,
        config: RunConfig,
        resume: bool = False,
        quiet: bool = False,
        overwrite: bool = False,
        stop_after: Optional[int] = None,
        stream: Optional[Stream] = None,
    ) -> None:
        self.config = config
        self.resume = resume
        self.quiet = quiet
        self.overwrite = overwrite
        self.stop_after = stop_after  # stop (resumably) once this many phases are complete
        self.stream = stream  # already read by the preflight checks (None: read it here)
        self.run_state: Optional[RunState] = None  # the matrices, general rows and progress (engine.run_state)
        self.single_task: Optional[dict[str, float]] = None  # from eval.single_task_reference
        self.lock: Optional[RunLock] = None  # held by the main process for the life of the run
        self.created = False  # this run made (or emptied) the folder: a failed start removes it
        #: --overwrite set the old run aside and the start-up has not passed yet: a failure puts it back
        self.replacing = False
        self.checkpoint: Optional[ckpt.Checkpoint] = None  # the verified checkpoint resumed from
        self.notes: list[str] = []  # what the set-up found and did, logged once the log exists
        self.logger: Optional[logging.Logger] = None
        self.hooks = HookDispatcher([])
        self.folder: Any = NoWrites()  # the run folder once built (only the main process writes)
        self.accelerator: Optional[Accelerator] = None
        self.step_log: Optional[StepLog] = None  # records for the trackers (train.report_to)

    # -- set-up ----------------------------------------------------------------------------

    def _prepare_run_dir(self, accelerator: Accelerator) -> Path:
        """Check the run folder on every process; only the main process creates, locks or clears it.

        A new folder gets its marker, the lock and config.yaml before anything else, so that from
        then on it is either resumable or (if the start-up fails) removed again.
        """
        run_dir = self.config.run_dir
        # Again (time passed since preflight); the lock only on the main process, which takes it.
        check_run_folder(self.config, self.resume, self.overwrite, probe=accelerator.is_main_process)
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if self.resume:
                self.lock = RunLock(run_dir).acquire()
                self._prepare_resume(run_dir)
            else:
                occupied = run_dir.is_dir() and any(run_dir.iterdir())
                if not occupied:
                    create_run_folder(run_dir)
                self.lock = RunLock(run_dir).acquire()
                self.created = True
                if occupied:  # kept aside until the start-up has passed (reporting.guard)
                    set_aside_run_folder(run_dir, Path(self.config.output_dir))
                    self.replacing = True
                RunFolder(run_dir).write_config(self.config.to_dict())
        accelerator.wait_for_everyone()
        if self.resume and not accelerator.is_main_process and ckpt.has_checkpoint(run_dir):
            self.checkpoint = ckpt.open_checkpoint(run_dir)
        return run_dir

    def _prepare_resume(self, run_dir: Path) -> None:
        """Refuse results-shaping changes, repair a crash's leftovers, verify the checkpoint."""
        saved = read_saved_config(run_dir)
        changes = resume_changes(saved.to_dict(), self.config.to_dict())
        if changes:
            RunFolder(run_dir).write_config(self.config.to_dict())
            for key, (old, new) in changes.items():
                self.notes.append(f"resume: {key} changed from {old!r} to {new!r} (config.yaml updated)")
        recovered = ckpt.recover_checkpoint(run_dir)
        if recovered:
            self.notes.append(recovered)
        removed = ckpt.remove_stale_temps(run_dir)
        if removed:
            self.notes.append(f"removed {len(removed)} leftovers of an interrupted write: {', '.join(removed)}")
        if ckpt.has_checkpoint(run_dir):
            self.checkpoint = ckpt.open_checkpoint(run_dir)
        else:
            missing = f"{ckpt.CHECKPOINT_DIR}/{ckpt.STATE_FILE}" if (run_dir / ckpt.CHECKPOINT_DIR).is_dir() else f"{ckpt.CHECKPOINT_DIR}/"
            self.notes.append(
                f"{run_dir}: no {missing} (the run stopped before its first checkpoint, or it was removed): "
                "nothing to continue from, so the run starts again from the first task"
            )

    def _make_methods(self) -> list[Method]:
        """The run's methods, from its config (an evaluation without training has none)."""
        return instantiate(self.config.method_specs())

    def _load_model(self, model_config: ModelConfig, stream: Stream, seed: int) -> LoadedModel:
        """The model to train (an evaluation loads a trained one, with its adapter, instead)."""
        return load_model(model_config, stream, seed)

    def _build(self) -> tuple[RunContext, list[Method], RunFolder]:
        config = self.config
        methods = self._make_methods()
        lora = config.model.lora.enabled or any(m.needs_lora is True for m in methods)
        model_config = replace(config.model, lora=replace(config.model.lora, enabled=lora))
        # Validate the method list against the model kind before any heavy loading.
        from retain.models.loading import _resolve_kind  # noqa: PLC0415  (cheap config read)

        kind, _ = _resolve_kind(model_config)
        # The written config is the resolved one: the kind, LoRA switch and weight dtype used.
        config.model = replace(model_config, kind=kind, dtype=resolve_dtype(model_config.dtype, config.train.mixed_precision))
        model_config = config.model
        # Several runs in one process (a notebook, a benchmark) may ask for different precisions.
        reset_run_state()
        train = config.train
        sharding = requested_mode(train.sharding)
        if sharding != "none" and not train.reset_optimizer_per_task:
            raise RetainError(
                f"train.reset_optimizer_per_task=false with sharding {sharding}: a carried optimizer's "
                "state is sharded over processes and checkpoints hold full weights only, so a resumed run "
                "could not restore it; use train.reset_optimizer_per_task=true"
            )
        # Built before the Accelerator: a tracker whose package is missing stops the run here.
        trackers = build_trackers([n for n in train.report_to if n != "none"], config.run_dir, config.name)
        accelerator = self.accelerator = build_accelerator(sharding, train, trackers)
        check_combination(methods, kind, lora, distributed_mode(accelerator))
        set_seed(config.seed)
        # Data errors surface here, before the run folder exists: nothing half-written is left.
        stream = self.stream if self.stream is not None else build_stream(config.stream, config.seed)
        self.single_task = read_single_task_reference(config.eval.single_task_reference, stream.task_names)
        # Everything that can still refuse the config (the model, its tokenizer, the chat template,
        # the encoder) comes before the run folder is touched: a refusal leaves it as it was.
        loaded = self._load_model(model_config, stream, config.seed)
        chat = configure_chat_template(loaded.tokenizer, model_config.chat_template, loaded.kind)
        encoder = Encoder(
            loaded.tokenizer, loaded.kind, loaded.label_names,
            config.stream.max_source_length, config.stream.max_target_length, config.eval.label_space,
            config.train.label_space, chat=chat,
        )
        run_dir = self._prepare_run_dir(accelerator)
        # Under data parallelism every process trains and evaluates; only the main one writes.
        main = accelerator.is_main_process
        folder: Any = RunFolder(run_dir) if main else NoWrites()
        logger = self.logger = _make_logger(run_dir if main else None, self.quiet or not main)
        if trackers:
            if self.checkpoint is not None:
                set_resume_step(trackers, int(self.checkpoint.state["global_step"]))
            accelerator.init_trackers("retain", config=flat_config(config.to_dict()))
        self.step_log = StepLog(accelerator, config.train.logging_steps)
        for note in self.notes:
            logger.warning(note)
        for task in stream.tasks:
            if task.skipped_records:
                logger.warning("task %s: %d records skipped while reading (see warnings above)", task.name, task.skipped_records)
        model = loaded.model
        if config.train.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        # Placed, not wrapped: each phase prepares the model with its optimizer (module docstring).
        model = accelerator.prepare_model(model, evaluation_mode=True)
        hooks = HookDispatcher(methods)
        phases: Optional[list[Phase]] = hooks.call("on_plan_phases", stream)
        if phases is None:
            phases = _default_phases(len(stream.tasks), stream.task_names)
        epochs = resolve_task_epochs(config.train, stream)
        for phase in phases:  # a multi-task phase refuses unequal epochs now, not when it is reached
            phase_epochs(epochs, phase.task_indices, phase.name)
        components: dict[str, list[Any]] = {}
        for method in methods:
            for kind_name, component in method.shared_components().items():
                components.setdefault(kind_name, []).append(component)
        ctx = RunContext(
            config=config, accelerator=accelerator, model=model, tokenizer=loaded.tokenizer,
            kind=loaded.kind, stream=stream, encoder=encoder, run_dir=run_dir, state=TrainingState(phases),
            logger=logger, lora=lora, capabilities=frozenset(c for m in methods for c in m.capabilities),
            components=components, show_progress=bars_allowed(config, self.quiet, accelerator.is_local_main_process),
        )
        hooks.run_steps = lambda steps: run_extra_steps(ctx, steps)
        self.hooks, self.folder = hooks, folder
        hooks.call("on_setup", ctx)
        if self.replacing:  # the start-up has passed: the run it replaces can go now
            discard_replaced(run_dir)
            self.replacing = False
        return ctx, methods, folder

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run to the end (or ``stop_after``); the run folder is locked throughout.

        If the run fails or is interrupted before its first checkpoint, a folder it created is
        removed again: nothing half-made is left that neither ``run`` nor ``--resume`` accepts.
        """
        try:
            with tf32_matmuls(self.config.train.tf32):
                return self._run()
        except BaseException:
            self._finish_trackers()
            self._close_log()
            run_dir = self.config.run_dir
            if self.replacing:  # an --overwrite whose start-up failed: the old run comes back
                restore_replaced(run_dir)
            elif self.created and not ckpt.has_checkpoint(run_dir):
                shutil.rmtree(run_dir, ignore_errors=True)
            raise
        finally:
            self._finish_trackers()
            self._close_log()
            if self.lock is not None:
                self.lock.release()

    def _finish_trackers(self) -> None:
        """Close the trackers' files and runs (not ``end_training``: it would end the process group)."""
        if self.accelerator is not None:
            for tracker in self.accelerator.trackers:
                tracker.finish()
            self.accelerator.trackers = []

    def _close_log(self) -> None:
        if self.logger is not None:
            for handler in list(self.logger.handlers):
                handler.close()
                self.logger.removeHandler(handler)

    def _run(self) -> RunResult:
        ctx, methods, folder = self._build()
        config, logger, stream = self.config, ctx.logger, ctx.stream
        if self.single_task is not None:
            folder.write_single_task_scores(self.single_task)
        names = stream.task_names
        if self.resume and self.checkpoint is not None:
            run_state = self.run_state = self._resumed_state(ctx, methods)
            logger.info("resuming %s after %d of %d phases", ctx.run_dir, run_state.completed_phases, len(ctx.phases))
        else:
            run_state = self.run_state = RunState(empty_matrix(stream, config.eval.before_training), empty_general(stream))
        matrix, general, start_phase = run_state.matrix, run_state.general, run_state.completed_phases
        logger.info(
            "run %s: %s model, %s, methods %s, %d tasks (%s)",
            config.name, ctx.kind, config.model.name_or_path,
            "+".join(m.name for m in methods), len(names), ", ".join(names),
        )
        for line in scoring_lines(stream):
            logger.info("%s", line)
        if ctx.encoder.chat:
            source = "the tokenizer's own" if config.model.chat_template == "tokenizer" else "model.chat_template's"
            logger.info("prompts: one user turn each, rendered with %s chat template", source)
        if start_phase == 0 and not matrix.rows:
            self._score_untrained(ctx, run_state, folder, "before training" if config.eval.before_training else None)
            if config.eval.before_training or general is not None:
                self._checkpoint(ctx, methods, run_state, 0)

        end_phase = len(ctx.phases) if self.stop_after is None else min(len(ctx.phases), self.stop_after)
        for phase_index in range(start_phase, end_phase):
            self._train_one_phase(ctx, methods, phase_index, phase_index == start_phase and self.resume)
            self._evaluate_row(ctx, run_state, folder, f"after {ctx.phase.name}", ctx.task_index)
            if general is not None:
                self._evaluate_general(ctx, general, folder)
            # Before the checkpoint: a crash in between redoes the phase and writes the model again.
            self._keep_task_model(ctx, phase_index + 1)
            self._checkpoint(ctx, methods, run_state, phase_index + 1)

        single = [self.single_task[name] for name in names] if self.single_task is not None else None
        metrics = compute_cl_metrics(matrix, general=general, single_task_scores=single)
        folder.write_metrics(metrics)
        text = format_matrix_text(matrix) + "\n\n" + format_metrics_text(metrics, matrix)
        union_metrics = None
        if run_state.union is not None:
            union_metrics = compute_cl_metrics(run_state.union)
            folder.write_metrics(union_metrics, variant="union")
        self._write_report(ctx, methods)
        return RunResult(
            ctx.run_dir, matrix, metrics, text, ctx.accelerator.is_main_process, run_state.union, union_metrics,
            model=ctx.unwrapped_model(), tokenizer=ctx.tokenizer,
        )

    def _resumed_state(self, ctx: RunContext, methods: list[Method]) -> RunState:
        """The run state of the verified checkpoint, checked against the stream; the methods'
        states and the model's weights are restored from it."""
        assert self.checkpoint is not None
        stream = ctx.stream
        state = RunState.from_dict(self.checkpoint.state, self.checkpoint.method_states())
        matrix = state.matrix
        matrix.task_metrics = matrix.task_metrics or [t.metric for t in stream.tasks]
        matrix.task_answer_processing = matrix.task_answer_processing or _answer_processing(stream)
        if matrix.task_names != stream.task_names:
            raise RetainError(
                f"{ctx.run_dir}: the checkpoint's tasks ({', '.join(matrix.task_names)}) are not the stream's "
                f"({', '.join(stream.task_names)}): did the data files change? The run cannot continue"
            )
        # The general rows go on only while the stream has general sets (it may have gained them).
        state.general = (state.general or empty_general(stream)) if stream.general else None
        ctx.state.global_step = state.global_step
        for method, method_state in zip(methods, state.method_states):
            method.load_state_dict(method_state)
        self.checkpoint.load_model_weights(ctx.unwrapped_model())
        return state

    def _train_one_phase(self, ctx: RunContext, methods: list[Method], phase_index: int, resumed: bool) -> None:
        config, logger, hooks = self.config, ctx.logger, self._hooks_for(ctx, methods)
        ctx.state.phase_index = phase_index
        set_seed(config.seed + 1000 * (phase_index + 1))
        with ctx.full_parameters():  # snapshots and teacher passes (no-op unless FSDP-sharded)
            hooks.call("on_phase_start", ctx)
        fresh = (
            ctx.optimizer is None
            or config.train.reset_optimizer_per_task
            or any(m.needs_fresh_optimizer for m in methods)
        )
        plan = local_plan(ctx, hooks.call("on_plan_batches", ctx, new_task_plan(ctx)))
        steps = optimizer_steps(len(plan), config.train.grad_accum)
        if fresh:
            self._prepare_phase(ctx, steps)
            if resumed and not config.train.reset_optimizer_per_task and self.checkpoint is not None:
                self.checkpoint.load_optimizer(ctx.optimizer.optimizer, ctx.scheduler)
        start_accumulation_window(ctx.accelerator)
        started = time.perf_counter()
        stats = train_phase(ctx, hooks, plan, show_progress=not self.quiet, step_log=self.step_log)
        ctx.unwrapped_model().zero_grad(set_to_none=True)
        with ctx.full_parameters():  # statistics passes over the finished task
            hooks.call("on_phase_end", ctx)
        if config.train.reset_optimizer_per_task or any(m.needs_fresh_optimizer for m in methods):
            self._release_optimizer(ctx)  # the next phase builds its own (contract point 4)
        self.folder.write_method_files(hooks.call("on_run_files"))
        logs = hooks.call("on_log")
        if self.step_log is not None:
            self.step_log.log({f"method/{k}": v for k, v in logs.items()}, ctx.state.global_step)
        trunc = ctx.encoder.truncation
        norms = stats["grad_norms"]
        logger.info(
            "phase %d/%d %s: %d micro-batches, %d steps, mean loss %.4f, %.1fs%s%s%s",
            phase_index + 1, len(ctx.phases), ctx.phase.name, stats["micro_batches"], stats["steps"],
            stats["mean_loss"], time.perf_counter() - started,
            "; grad norm before clipping: " + ", ".join(f"{k} {v:.3g}" for k, v in norms.items()) if norms else "",
            f"; truncated so far: {trunc.sources} prompts, {trunc.targets} targets of {trunc.seen}" if trunc.sources or trunc.targets else "",
            "; " + ", ".join(f"{k}={v:.4g}" for k, v in logs.items()) if logs else "",
        )
        clipped = clipped_sources_warning(ctx.phase.name, norms, config.train.max_grad_norm)
        if clipped:
            logger.warning(clipped)

    def _prepare_phase(self, ctx: RunContext, steps: int) -> None:
        """A new optimizer over the trainable parameters, prepared together with the bare model."""
        config, accelerator = self.config, ctx.accelerator
        self._release_optimizer(ctx)
        release(accelerator, ctx.model)
        model = bare_model(accelerator, ctx.model)
        parameters = [p for p in model.parameters() if p.requires_grad]
        if not parameters:
            raise RetainError("no trainable parameters: check the method list and model.lora settings")
        optimizer = build_optimizer(parameters, config.train)
        total_steps = steps if config.train.reset_optimizer_per_task else steps * len(ctx.phases)
        ctx.scheduler = build_scheduler(optimizer, config.train, total_steps)
        forget_engine(accelerator)  # DeepSpeed: one engine per prepared optimizer
        ctx.model, ctx.optimizer = prepare_task(accelerator, model, optimizer)

    @staticmethod
    def _release_optimizer(ctx: RunContext) -> None:
        release(ctx.accelerator, ctx.optimizer, ctx.scheduler)
        ctx.optimizer, ctx.scheduler = None, None

    def _hooks_for(self, ctx: RunContext, methods: list[Method]) -> HookDispatcher:
        """The run's dispatcher, or a new one when called with another method list (tests, benchmarks)."""
        if self.hooks.methods != methods:
            self.hooks = HookDispatcher(methods, lambda steps: run_extra_steps(ctx, steps))
        return self.hooks

    def _evaluate_row(self, ctx: RunContext, state: RunState, folder: RunFolder, label: str, task_index: Optional[int]) -> None:
        """Score a row (``task_index`` None: row 0) into ``state``'s matrices and write them."""
        matrix = state.matrix
        cells = cells_to_evaluate(self.config.eval.cells, len(ctx.stream.tasks), task_index, with_next=matrix.has_initial_row)
        with ctx.full_parameters():
            row = evaluate_tasks(ctx, ctx.stream.tasks, only=cells, name=f"eval row {len(matrix.rows)} ({label})")
        row_index = state.add_row(label, task_index, row.scores, row.union_scores)
        folder.write_matrix(matrix)
        if state.union is not None and row.union_scores is not None:
            folder.write_matrix(state.union, variant="union")
        if self.config.eval.save_predictions:
            for name, records in row.predictions.items():
                if records:
                    folder.write_predictions(row_index, name, records)
        if self.step_log is not None:
            cells = {f"matrix/{n}": s for n, s in zip(matrix.task_names, row.scores) if s is not None}
            self.step_log.log({"matrix/row": row_index, **cells}, ctx.state.global_step)
        scores = ", ".join(f"{n}={s:.1f}" for n, s in zip(matrix.task_names, row.scores) if s is not None)
        ctx.logger.info(
            "row %d (%s): %s  [%.0f eval examples/s, %.1fs]", row_index, label, scores, row.examples_per_second, row.seconds
        )
        if task_index is not None:
            for name, before, after in never_learned(matrix):
                if name == matrix.task_names[task_index]:
                    ctx.logger.warning(never_learned_text(name, before, after))

    def _keep_task_model(self, ctx: RunContext, completed: int) -> None:
        """The exportable model after this phase (every phase with output.keep_task_models, else the last)."""
        total = len(ctx.phases)
        if completed != total and not self.config.output.keep_task_models:
            return
        ctx.accelerator.wait_for_everyone()
        # On every process: under FSDP and ZeRO-3 the local parameters are shards (partitions),
        # and gathering is a collective.
        gather = is_sharded(ctx.model) or distributed_mode(ctx.accelerator) == "zero3"
        full_state = full_state_dict(ctx.accelerator, ctx.model) if gather else None
        if not ctx.accelerator.is_main_process:
            return
        started = time.perf_counter()
        folder = save_task_model(
            task_model_dir(ctx.run_dir, completed), ctx.unwrapped_model(), ctx.tokenizer, ctx.kind,
            self.config.model.name_or_path, completed, total, ctx.phase.name, full_state,
        )
        ctx.logger.info("kept the model after task %d/%d in %s (%.1fs)", completed, total, folder, time.perf_counter() - started)

    def _score_untrained(self, ctx: RunContext, state: RunState, folder: RunFolder, label: Optional[str]) -> None:
        """The rows of the model as loaded: a matrix row labelled ``label`` (None: none) and the
        general sets' row, scored on the accelerator's device (under FSDP the model is not
        prepared yet, see :func:`~retain.engine.evaluate.on_scoring_device`)."""
        with on_scoring_device(ctx.unwrapped_model(), ctx.device):
            if label is not None:
                self._evaluate_row(ctx, state, folder, label, None)
            if state.general is not None:
                self._evaluate_general(ctx, state.general, folder)

    def _evaluate_general(self, ctx: RunContext, general: GeneralScores, folder: RunFolder) -> None:
        """One row of the general sets, on gathered parameters, written to general.json."""
        own = [g for g in ctx.stream.general if not is_lm_eval_task(g)]  # lm-eval sets: general_row
        with ctx.full_parameters():
            row = evaluate_tasks(ctx, own, 10_000, name="eval general sets")
            general.rows.append(general_row(ctx, general, row.scores))
        folder.write_general(general)
        scores = ", ".join(f"{g.name}={s:.1f}" for g, s in zip(own, row.scores) if s is not None)
        if own:
            ctx.logger.info("general sets: %s  [%.1fs]", scores, row.seconds)

    def _checkpoint(self, ctx: RunContext, methods: list[Method], state: RunState, completed: int) -> None:
        """Write ``state`` (after ``completed`` phases), the methods' states and the weights."""
        carried = not self.config.train.reset_optimizer_per_task and ctx.optimizer is not None
        ctx.accelerator.wait_for_everyone()
        # On every process: under sharding, gathering the full state dict is a collective.
        full_state = full_state_dict(ctx.accelerator, ctx.model)
        state.completed_phases, state.global_step = completed, ctx.state.global_step
        if not ctx.accelerator.is_main_process:
            return
        state.method_states = [m.state_dict() for m in methods]
        ckpt.save_checkpoint(
            ctx.run_dir,
            ctx.unwrapped_model(),
            ctx.lora,
            state.to_dict(),
            state.method_states,
            ctx.optimizer.optimizer if carried else None,
            ctx.scheduler if carried else None,
            state_dict=full_state,
        )

    def _write_report(self, ctx: RunContext, methods: list[Method]) -> None:
        from retain.reporting.report import render_report

        # Only the main process: a method's section may write a file (a plot) into the run folder.
        if ctx.accelerator.is_main_process:
            render_report(ctx.run_dir, extra_sections=self.hooks.call("on_report", ctx))


def run(
    config: Any = None,
    overrides: Optional[list[str]] = None,
    resume: bool = False,
    quiet: bool = False,
    overwrite: bool = False,
    stop_after: Optional[int] = None,
    prepared: Optional[Prepared] = None,
    allow_imports: Iterable[str] = (),
) -> RunResult:
    """Run an experiment. ``config``: YAML path, dict, RunConfig, or (with resume) a run folder.

    ``stop_after`` ends the run, resumably, once that many phases are complete. ``prepared``: the
    result of :func:`retain.engine.preflight.prepare` when the caller already ran those checks.
    ``allow_imports``: on resume, the import-path metrics of the folder's config that may be
    imported (a run folder never makes retain import code on its own).
    """
    if prepared is None:
        prepared = prepare(config, overrides, resume=resume, overwrite=overwrite, allow_imports=allow_imports)
    return ContinualRunner(
        prepared.config, resume=prepared.resume, quiet=quiet, overwrite=prepared.overwrite,
        stop_after=stop_after, stream=prepared.stream,
    ).run()
