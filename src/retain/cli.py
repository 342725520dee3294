"""Command line: ``retain run | eval | demo | sweep | report | export | compare | list | init``.

User mistakes (bad config, bad data, impossible method lists) and what the machine refuses (a full
disk, a read-only folder) print one message and exit 2 (``--debug`` adds the traceback); Ctrl-C
or SIGTERM exits 130 and says how to resume, and a process that cannot unwind (stuck in a
collective) is ended seconds later by :mod:`retain.stop_watchdog`. A run is checked (config, data
files, run folder) before torch is imported, so a mistake is reported in a fraction of a second.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
import traceback
from importlib import resources
from pathlib import Path
from typing import Optional

from retain.errors import RetainError


def _demo_config_path() -> Path:
    return Path(str(resources.files("retain") / "configs" / "demo.yaml"))


def _cmd_run(args: argparse.Namespace) -> int:
    from retain.engine.preflight import prepare

    if args.dry_run:
        from retain.engine.dry_run import describe_run

        if args.resume or args.config is None:
            raise RetainError("retain run --dry-run takes a CONFIG.yaml (a resumed run is described by its folder's config.yaml)")
        print(describe_run(args.config, args.overrides))
        return 0
    if args.resume:
        if args.config is not None:
            raise RetainError(f"retain run --resume RUN_DIR takes no config file (got {args.config}); a resumed run keeps its own config.yaml")
        prepared = prepare(args.resume, args.overrides, resume=True, allow_imports=args.allow_import)
    else:
        if args.config is None:
            raise RetainError("retain run: give a CONFIG.yaml (or --resume RUN_DIR)")
        prepared = prepare(args.config, args.overrides, overwrite=args.overwrite)
    args.run_dir = prepared.run_dir
    from retain.engine.runner import run  # torch and transformers: only once the input is known good

    result = run(prepared=prepared, quiet=args.quiet, stop_after=args.stop_after)
    if result.is_main:
        print(result.text)
        print(f"\nrun folder: {result.run_dir}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from retain.engine.preflight import prepare

    prepared = prepare(_demo_config_path(), args.overrides, overwrite=True)
    args.run_dir = prepared.run_dir
    from retain.engine.runner import run

    result = run(prepared=prepared, quiet=args.quiet)
    print(result.text)
    print(f"\nrun folder: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from retain.engine.model_evaluation import evaluate_model, prepare_evaluation

    prepared = prepare_evaluation(args.config, args.overrides, args.model, args.adapter, args.name, args.overwrite)
    args.run_dir = prepared[0].run_dir
    result = evaluate_model(args.config, quiet=args.quiet, prepared=prepared)
    if result.is_main:
        print(result.text)
        print(f"\nevaluation folder: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from retain.sweeps import SweepRunError, run_sweep

    try:
        result = run_sweep(args.sweep, dry_run=args.dry_run, quiet=args.quiet, verbose_runs=args.verbose)
    except SweepRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_status
    except KeyboardInterrupt:
        print(f"\ninterrupted; finished runs are kept, continue with: retain sweep {args.sweep}", file=sys.stderr)
        return 130
    print(result.text)
    print(f"sweep folder: {result.folder}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from retain.reporting.report import render_report

    print(render_report(Path(args.run_dir)))
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from retain.exporting import export_run  # torch, transformers, PEFT: only export needs them

    result = export_run(Path(args.run_dir), Path(args.out), after_task=args.after_task, merge=args.merge)
    what = "PEFT adapter (PeftModel.from_pretrained)" if result.form == "adapter" else f"model ({result.auto_class}.from_pretrained)"
    print(f"exported the model after task {result.after_phase} ({result.phase_name}) to {result.out}: {what}, with its tokenizer")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from retain.reporting.compare import compare_runs

    print(compare_runs([Path(p) for p in args.run_dirs]))
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from retain.examples import copy_example, describe_examples

    if args.name is None:
        print("shipped configs (retain init NAME [DEST] copies one):\n" + describe_examples())
        return 0
    for path in copy_example(args.name, Path(args.dest) if args.dest else None):
        print(f"wrote {path}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from retain.config import RunConfig, describe_fields
    from retain.data.benchmarks import BENCHMARKS
    from retain.data.readers import FORMATS
    from retain.evaluation.metrics import METRICS
    from retain.methods.registry import broken_methods, method_table
    from retain.models.builtin import BUILTIN_MODELS

    print("methods (or an import path package.module:Class):")
    for name, summary, params in method_table():
        print(f"  {name:<10} {summary}")
        for key, default, help_text in describe_fields(params):
            print(f"      {key}={default!r}  {help_text}")
    for module, error in broken_methods().items():
        print(f"  (not loaded: module {module} failed to import: {error})")
    print("\nbenchmarks:")
    for name, description in BENCHMARKS.items():
        print(f"  {name:<14} {description}")
    print("\ndata formats:")
    for name, reader in FORMATS.items():
        description = getattr(reader, "description", None) or (reader.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<8} {description}")
    print("\nmetrics (a task's metric; or an import path package.module:Class):")
    for name, metric_class in METRICS.items():
        direction = "higher is better" if metric_class.higher_is_better else "lower is better"
        print(f"  {name:<10} {metric_class.display_name} ({direction}): {metric_class.definition}")
    print("\nbuilt-in models: " + ", ".join(f"builtin:{n} ({k})" for n, (k, _) in BUILTIN_MODELS.items()))
    if args.config:
        print("\nconfig keys:")
        for key, default, help_text in describe_fields(RunConfig):  # help ends with the valid values
            print(f"  {key} = {default!r}\n      {help_text}")
        from retain.config_aliases import KEY_ALIASES

        print("\nkey aliases (Hugging Face TrainingArguments / LLaMA-Factory names):")
        for alias, canonical in KEY_ALIASES.items():
            print(f"  {alias} -> {canonical}")
    return 0


class _OneLineParser(argparse.ArgumentParser):
    """A command-line mistake is one ``error:`` line like any other (argparse would print the whole
    usage first); ``--help`` still shows the usage."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    from retain import __version__

    parser = _OneLineParser(prog="retain", description="Continual learning of language models.")
    parser.add_argument("--version", action="version", version=f"retain {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)

    p = sub.add_parser("run", help="run an experiment from a YAML config")
    p.add_argument("config", nargs="?", help="experiment YAML")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-4")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines on the terminal")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop (resumably) after N tasks")
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config, the stream (counts, truncation, labels) and the methods' plan; run nothing")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="set_overrides",
                   help="an override, as the positional key=value ones (repeatable)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("eval", help="score a saved or exported model (and adapter) on a config's tasks and general sets, no training")
    p.add_argument("config", help="experiment YAML: its stream, general sets and eval settings are used")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. stream.eval_split=test")
    p.add_argument("--model", metavar="PATH_OR_NAME", help="the model to score (default: the config's model.name_or_path; with --adapter, the adapter's base)")
    p.add_argument("--adapter", metavar="PATH", help="a PEFT adapter folder loaded on top of the model (e.g. from retain export)")
    p.add_argument("--name", help="the evaluation folder's name in output_dir (default: the config's name + '-eval')")
    p.add_argument("--overwrite", action="store_true", help="replace an existing evaluation folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines on the terminal")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("demo", help="run the embedded default (generated stream, tiny model)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("sweep", help="run a grid of methods x orders x seeds and tabulate mean ± std")
    p.add_argument("sweep", help="sweep YAML (base config, methods, orders, seeds, settings)")
    p.add_argument("--dry-run", action="store_true", help="list the runs and their state; run nothing")
    p.add_argument("--quiet", action="store_true", help="no progress lines on the terminal")
    p.add_argument("--verbose", action="store_true", help="also show each run's own log and progress bars")
    p.set_defaults(func=_cmd_sweep)

    p = sub.add_parser("report", help="re-print and re-render a run's results")
    p.add_argument("run_dir")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("export", help="write a run's model as a transformers model or a PEFT adapter, with its tokenizer")
    p.add_argument("run_dir", help="a finished run folder")
    p.add_argument("out", help="a new (or empty) folder")
    p.add_argument("--after-task", type=int, metavar="N", help="the model after task N (default: the last; "
                   "other tasks need output.keep_task_models: true in the run)")
    p.add_argument("--merge", action="store_true", help="LoRA runs: merge the adapter(s) into the base weights (a plain model)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("compare", help="one table over run folders; seeds of one config pooled as mean ± std (n)")
    p.add_argument("run_dirs", nargs="+")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("init", help="copy a shipped example config (no NAME: list them)")
    p.add_argument("name", nargs="?", help="a shipped config, e.g. demo-replay (see `retain init`)")
    p.add_argument("dest", nargs="?", help="destination folder (default: here) or file name ending in .yaml")
    p.set_defaults(func=_cmd_init)

    p = sub.add_parser("list", help="registered methods, benchmarks, data formats")
    p.add_argument("--config", action="store_true", help="also list every config key with its default")
    p.set_defaults(func=_cmd_list)
    for name in _READS_RUN_FOLDERS:
        sub.choices[name].add_argument(
            "--allow-import", action="append", default=[], metavar="PACKAGE.MODULE:CLASS",
            help="import this metric or method named by a run folder's config (repeatable); a folder, maybe "
                 "someone else's, never makes retain import code on its own",
        )
    for command in sub.choices.values():
        command.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return parser


#: the commands that read run folders, whose configs may name import-path metrics and methods
_READS_RUN_FOLDERS = ("run", "report", "compare", "export")


def _folder_code_gate(args: argparse.Namespace) -> contextlib.AbstractContextManager[None]:
    """While a command reads run folders, only the import paths given with --allow-import are
    imported (``run`` with a config of the user's own imports what that config names)."""
    reads_folders = args.command in _READS_RUN_FOLDERS and (args.command != "run" or args.resume)
    if not reads_folders:
        return contextlib.nullcontext()
    from retain.evaluation.metrics.registry import importing_only

    return importing_only(args.allow_import, "a run folder's config")


# errno values that mean "the machine refuses the write", not a bug: one line, exit 2.
_WRITE_REFUSED = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exhausted",
    errno.EFBIG: "the file size limit was reached",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so it unwinds (and cleans up) like Ctrl-C."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


def _interrupted_message(args: argparse.Namespace) -> str:
    run_dir = getattr(args, "run_dir", None) or getattr(args, "resume", None)
    if args.command == "eval":  # an evaluation keeps nothing half-scored (its folder is removed)
        return "interrupted; nothing was kept (an evaluation is not resumable: run retain eval again)"
    if run_dir is None:
        return "interrupted"
    from retain.reporting.run_folder import CONFIG_FILE

    if (Path(run_dir) / CONFIG_FILE).is_file():
        return f"interrupted; continue with: retain run --resume {run_dir}"
    return f"interrupted before the run folder {run_dir} was set up; nothing was kept"


def _os_error_message(exc: OSError, args: argparse.Namespace) -> str:
    where = exc.filename or getattr(args, "run_dir", None) or "a file"
    reason = _WRITE_REFUSED[exc.errno]
    verb = "cannot use" if exc.errno in (errno.EACCES, errno.EPERM) else "cannot write"
    message = f"{verb} {where}: {reason} ({exc.strerror})"
    run_dir = getattr(args, "run_dir", None) or getattr(args, "resume", None)
    if run_dir is not None:
        from retain.reporting.run_folder import CONFIG_FILE

        if (Path(run_dir) / CONFIG_FILE).is_file():
            return f"{message}; fix that, then continue with: retain run --resume {run_dir}"
    return f"{message}; fix that and run again"


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (`retain run cfg.yaml --quiet train.lr=1e-4`).
    unknown = [item for item in extra if item.startswith("-") or "=" not in item or not hasattr(args, "overrides")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if getattr(args, "set_overrides", None):
        bad = [item for item in args.set_overrides if "=" not in item]
        if bad:
            parser.error(f"--set {bad[0]}: expected KEY=VALUE")
        args.overrides = [*args.overrides, *args.set_overrides]
    if getattr(args, "config", None) and "=" in str(args.config) and args.command == "run":
        args.overrides = [args.config, *args.overrides]
        args.config = None
    debug = bool(getattr(args, "debug", False))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    watchdog = None
    if argv is None and previous is not None:  # the process's own command line: it owns its signals
        from retain.stop_watchdog import arm_stop_watchdog

        watchdog = arm_stop_watchdog()
    finished = False
    try:
        with _folder_code_gate(args):
            code = args.func(args)
        finished = True
        return code
    except RetainError as exc:
        _print_error(str(exc), debug)
        return 2
    except OSError as exc:
        if exc.errno not in _WRITE_REFUSED:
            raise
        _print_error(_os_error_message(exc, args), debug)
        return 2
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"\n{_interrupted_message(args)}", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        # The process's own command line owns its process group. Only a process that got as far
        # as torch can have one: a config refused before that never imports torch just to exit.
        if argv is None and "torch.distributed" in sys.modules:
            from retain.engine.collective import end_process_group

            end_process_group(finished)
        if watchdog is not None:  # kept to the end: the group's last barrier can hang on a dead peer
            watchdog.disarm()


def _print_error(message: str, debug: bool) -> None:
    if debug:
        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
