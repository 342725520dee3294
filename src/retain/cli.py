"""Command line: ``retain run | demo | sweep | report | compare | list``.

User mistakes (bad config, bad data, impossible method lists) print one message and exit 2;
Ctrl-C exits 130 and says how to resume.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import Optional

from retain.errors import RetainError


def _demo_config_path() -> Path:
    return Path(str(resources.files("retain") / "configs" / "demo.yaml"))


def _cmd_run(args: argparse.Namespace) -> int:
    from retain.engine.runner import run

    if args.resume:
        result = run(args.resume, overrides=args.overrides, resume=True, quiet=args.quiet, stop_after=args.stop_after)
    else:
        if args.config is None:
            raise RetainError("retain run: give a CONFIG.yaml (or --resume RUN_DIR)")
        result = run(args.config, overrides=args.overrides, quiet=args.quiet, overwrite=args.overwrite, stop_after=args.stop_after)
    if result.is_main:
        print(result.text)
        print(f"\nrun folder: {result.run_dir}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from retain.engine.runner import run

    result = run(_demo_config_path(), overrides=args.overrides, quiet=args.quiet, overwrite=True)
    print(result.text)
    print(f"\nrun folder: {result.run_dir}  (report: {result.run_dir / 'report.md'})")
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


def _cmd_compare(args: argparse.Namespace) -> int:
    from retain.reporting.compare import compare_runs

    print(compare_runs([Path(p) for p in args.run_dirs]))
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from retain.config import RunConfig, describe_fields
    from retain.data.benchmarks import BENCHMARKS
    from retain.data.readers import FORMATS
    from retain.methods.registry import method_table
    from retain.models.builtin import BUILTIN_MODELS

    print("methods:")
    for name, summary, params in method_table():
        print(f"  {name:<10} {summary}")
        for key, default, help_text in describe_fields(params):
            print(f"      {key}={default!r}  {help_text}")
    print("\nbenchmarks:")
    for name, description in BENCHMARKS.items():
        print(f"  {name:<14} {description}")
    print("\ndata formats:")
    for name, reader in FORMATS.items():
        description = getattr(reader, "description", None) or (reader.__doc__ or "").strip().splitlines()[0]
        print(f"  {name:<8} {description}")
    print("\nbuilt-in models: " + ", ".join(f"builtin:{n} ({k})" for n, (k, _) in BUILTIN_MODELS.items()))
    if args.config:
        print("\nconfig keys:")
        for key, default, help_text in describe_fields(RunConfig):
            print(f"  {key} = {default!r}\n      {help_text}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="retain", description="Continual learning of language models.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run an experiment from a YAML config")
    p.add_argument("config", nargs="?", help="experiment YAML")
    p.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.lr=1e-4")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines on the terminal")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop (resumably) after N tasks")
    p.set_defaults(func=_cmd_run)

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

    p = sub.add_parser("compare", help="one table over run folders; seeds of one config pooled as mean ± std (n)")
    p.add_argument("run_dirs", nargs="+")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("list", help="registered methods, benchmarks, data formats")
    p.add_argument("--config", action="store_true", help="also list every config key with its default")
    p.set_defaults(func=_cmd_list)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may come after options (`retain run cfg.yaml --quiet train.lr=1e-4`).
    unknown = [item for item in extra if item.startswith("-") or "=" not in item or not hasattr(args, "overrides")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    if getattr(args, "config", None) and "=" in str(args.config) and args.command == "run":
        args.overrides = [args.config, *args.overrides]
        args.config = None
    try:
        return args.func(args)
    except RetainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        run_dir = getattr(args, "resume", None) or "RUN_DIR"
        print(f"\ninterrupted; continue with: retain run --resume {run_dir}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
