"""retain: continual learning of language models on one engine."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def run(
    config: Any = None,
    overrides: list[str] | None = None,
    resume: bool = False,
    quiet: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    allow_imports: tuple[str, ...] | list[str] = (),
) -> Any:
    """Run an experiment from a YAML path, a dict or a RunConfig (or resume a run folder).

    Returns a :class:`retain.api.RunResult` with the run folder, the matrix and the metrics, and
    the trained model and its tokenizer (``result.model``, ``result.tokenizer``).
    ``stop_after=N`` stops (resumably) after N tasks. ``allow_imports``: on resume, the
    import-path metrics and methods (``package.module:Class``) of the folder's config that may be
    imported; a run folder never makes retain import code on its own.
    """
    from retain.api import run as _run

    return _run(
        config, overrides=overrides, resume=resume, quiet=quiet, overwrite=overwrite, stop_after=stop_after,
        allow_imports=allow_imports,
    )


def evaluate(
    config: Any = None,
    overrides: list[str] | None = None,
    model: str | None = None,
    adapter: str | None = None,
    name: str | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> Any:
    """Score a model without training it (``retain eval``): ``model`` (a path or Hub name; default
    the config's model, or with ``adapter`` the adapter's base) and an optional PEFT ``adapter``
    folder, on the config's tasks and general sets, with the run's metrics and files, in
    ``<output_dir>/<name>`` (default: the config's name + ``-eval``). Returns a
    :class:`retain.api.RunResult` whose matrix has the one row."""
    from retain.engine.model_evaluation import evaluate_model

    return evaluate_model(config, overrides, model=model, adapter=adapter, name=name, overwrite=overwrite, quiet=quiet)


def sweep(source: Any, dry_run: bool = False, quiet: bool = False, verbose_runs: bool = False) -> Any:
    """Run a sweep (a YAML path or a mapping: base config, methods, orders, seeds, settings).

    Finished runs are reused and partial ones resumed; returns a :class:`retain.sweeps.SweepResult`
    with the sweep folder and the summary (mean ± std (n) per method and metric).
    """
    from retain.sweeps import run_sweep

    return run_sweep(source, dry_run=dry_run, quiet=quiet, verbose_runs=verbose_runs)


def export(run_dir: Any, out: Any, after_task: int | None = None, merge: bool = False) -> Any:
    """Write a finished run's model to ``out``: ``save_pretrained`` weights (or, for a LoRA run, the
    PEFT adapter; ``merge=True``: merged into the base) plus the tokenizer, loadable without retain.

    ``after_task=N``: the model after task N (the run needs ``output.keep_task_models: true``).
    Returns a :class:`retain.exporting.ExportResult`.
    """
    from retain.exporting import export_run

    return export_run(run_dir, out, after_task=after_task, merge=merge)


def dry_run(config: Any = None, overrides: list[str] | None = None) -> str:
    """What ``run(config, overrides)`` would do, as ``retain run --dry-run`` prints it: the resolved
    config, the stream (counts, truncation, label sets) and the methods; nothing is run or written."""
    from retain.engine.dry_run import describe_run

    return describe_run(config, overrides)


def init(name: str, dest: Any = None) -> list[Any]:
    """Copy the shipped example config ``name`` to ``dest`` (a folder or a .yaml file name; default:
    the current folder); returns the paths written. ``retain.examples.example_configs()`` lists them."""
    from pathlib import Path

    from retain.examples import copy_example

    return copy_example(name, Path(dest) if dest is not None else None)


def compare(run_dirs: list[Any]) -> str:
    """The ``retain compare`` table (markdown) over run folders, seeds pooled."""
    from pathlib import Path

    from retain.reporting.compare import compare_runs

    return compare_runs([Path(d) for d in run_dirs])


from retain import errors  # noqa: E402

__all__ = ["run", "evaluate", "sweep", "export", "dry_run", "init", "compare", "errors", "__version__"]
