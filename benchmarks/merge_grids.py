"""Pool the runs of several grid results into one table, seed by seed, without their run folders.

A grid's runs are often spread over sessions or machines: seeds 42 and 1 one day, seed 2 the next
(``grid.py --seeds 2`` writes its own subset result), or order 1 in one grid and orders 2-3 in
another with the same recipe. Run folders are not kept in the repository, so the pooled table is
built from the results' ``per_run`` entries: per method label and order, every (seed, value) of
every file, then mean ± std (n) over seeds and, for a method that has every order of the pooled
files, over orders exactly as a sweep does (the mean over orders of each order's seed mean).

    python benchmarks/merge_grids.py --out merged_minilm-seekr-orders-1-3 \\
        benchmarks/results/grid_minilm-seekr-ablations.json \\
        benchmarks/results/grid_minilm-seekr-orders.s42+1.json \\
        benchmarks/results/grid_minilm-seekr-orders.replay-1pc+seekr-1pc-w_ad-1+seekr-1pc-no-attention-s2.json \\
        benchmarks/results/grid_minilm-seekr-orders.seekr-1pc-s2.json \\
        --only replay-1%,seekr-1%-w_ad-1,seekr-1%,seekr-1%-no-attention

Writes ``benchmarks/results/<out>.json`` (the grid result shape, so ``paired.py`` and
``grid_table.py`` read it) and ``<out>.md``. Pooling is only meaningful for runs of one recipe:
a label whose ``methods`` entry differs between files, or one (label, order, seed) cell with two
different values, is refused. Curves and per-task cells are not pooled (each source's plots show
them); the files' own commands are listed in the output.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, machine  # noqa: E402

from retain.reporting.aggregate import STD_DEFINITION, Spread, format_spread, spread, spread_of_means  # noqa: E402
from retain.reporting.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from retain.reporting.report import markdown_table  # noqa: E402
from retain.sweeps.summary import OVERALL, scope_name  # noqa: E402

#: the metrics of the Markdown tables, per family (task and union label spaces); the JSON keeps all
SHOWN = ("ap", "bwt", "fwt", "la")


class MergeError(Exception):
    """A source that cannot be pooled; the message names the file and the cell."""


def read_result(path: Path) -> dict[str, Any]:
    """A grid result's JSON; an error naming the file when it is not one or lacks per-run values."""
    if not path.is_file():
        raise MergeError(f"no result file {path}")
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        rows = payload["summary"]["rows"]
    except (ValueError, KeyError, TypeError) as err:
        raise MergeError(f"{path} is not a grid result JSON ({err!r})") from None
    for row in rows:
        for scope, group in row["orders"].items():
            if "per_run" in group:
                continue
            if len(group.get("seeds", [])) != 1:
                raise MergeError(f"{path}: {row['method']!r} on {scope} has no per_run values "
                                 "(a result written before they existed: rerun its grid to rewrite it)")
            # one seed: its spread's mean is the run's own value, exactly
            group["per_run"] = {k: [v["mean"]] for k, v in group["values"].items()}
    return payload


def order_of(scope: str) -> Optional[int]:
    """'order 2' -> 2; 'stream' (a custom stream without orders) -> None."""
    return int(scope.rpartition(" ")[2]) if scope.startswith("order ") else None


def pool(sources: Sequence[tuple[Path, dict[str, Any]]], only: Sequence[str]) -> dict[str, Any]:
    """label -> {"method", "setting", "methods", "cells": {order: {seed: (values, run path, file)}}}.

    A (label, order, seed) cell seen twice must hold the same values (the same run listed in two
    results); different values mean two different runs claim one seed, which pooling cannot settle.
    """
    rows: dict[str, dict[str, Any]] = {}
    for path, payload in sources:
        for row in payload["summary"]["rows"]:
            label = f"{row['method']} [{row['setting']}]" if row.get("setting") else row["method"]
            if only and row["method"] not in only:
                continue
            entry = rows.setdefault(label, {"method": row["method"], "setting": row.get("setting", ""),
                                            "methods": row.get("methods"), "first": path, "cells": {}})
            if row.get("methods") != entry["methods"]:
                raise MergeError(f"{path}: {label!r} is {row.get('methods')} there but {entry['methods']} "
                                 f"in {entry['first']}: not one recipe, not pooled")
            for scope, group in row["orders"].items():
                cell = entry["cells"].setdefault(order_of(scope), {})
                runs = group.get("runs") or [""] * len(group["seeds"])
                for index, (seed, run_path) in enumerate(zip(group["seeds"], runs)):
                    values = {k: v[index] for k, v in group["per_run"].items()}
                    if seed in cell and cell[seed][0] != values:
                        raise MergeError(f"{path}: {label!r} {scope} seed {seed} differs from the run of that "
                                         f"seed in {cell[seed][2]}: two runs claim one seed")
                    cell.setdefault(seed, (values, run_path, path))
    missing = sorted(set(only) - {entry["method"] for entry in rows.values()})
    if missing:
        raise MergeError(f"--only {missing[0]!r} is in none of the files")
    return rows


def ordered_keys(orderings: Sequence[Any], present: Sequence[Any]) -> list[str]:
    """The keys found in any of ``present``, in the order they first appear in ``orderings``."""
    keys: list[str] = []
    for mapping in orderings:
        keys += [k for k in mapping if k not in keys and any(k in p for p in present)]
    return keys


def summarise(rows: dict[str, Any], sources: Sequence[tuple[Path, dict[str, Any]]]) -> dict[str, Any]:
    """The pooled summary in the grid result shape (per order: seeds, runs, values, per_run)."""
    titles: dict[str, str] = {}  # metric key -> title, the first file's wording where several have it
    for _, payload in sources:
        for key, title in payload["summary"].get("metrics", {}).items():
            titles.setdefault(key, title)
    orders = sorted({o for entry in rows.values() for o in entry["cells"]}, key=lambda o: (o is None, o or 0))
    out_rows = []
    for label, entry in rows.items():
        by_order: dict[str, Any] = {}
        spreads: dict[Optional[int], dict[str, Spread]] = {}
        for order in [o for o in orders if o in entry["cells"]]:
            cell = entry["cells"][order]
            seeds = list(cell)
            keys = ordered_keys([titles, *(cell[s][0] for s in seeds)], present=[cell[s][0] for s in seeds])
            spreads[order] = {k: spread(cell[s][0].get(k) for s in seeds) for k in keys}
            by_order[scope_name(order)] = {
                "runs": [cell[s][1] for s in seeds],
                "seeds": seeds,
                "values": {k: v.to_dict() for k, v in spreads[order].items()},
                "per_run": {k: [cell[s][0].get(k) for s in seeds] for k in keys},
            }
        overall = None
        if len(orders) > 1 and set(spreads) == set(orders):  # over orders only where it has them all
            keys = ordered_keys([titles, *spreads.values()], present=list(spreads.values()))
            overall = {"orders": orders, "values": {
                k: spread_of_means(s.get(k, Spread(None, None, 0)) for s in spreads.values()).to_dict() for k in keys}}
        out_rows.append({"setting": entry["setting"], "method": entry["method"], "methods": entry["methods"],
                         "orders": by_order, OVERALL: overall})
    return {
        "sweep": "pooled: " + " + ".join(str(p.name) for p, _ in sources),
        "std": STD_DEFINITION,
        "metrics": titles,
        "orders": orders,
        "rows": out_rows,
        "missing_runs": sorted({m for _, payload in sources for m in payload["summary"].get("missing_runs", [])}),
        "pooled_from": [{"file": str(p.name), "command": payload.get("command")} for p, payload in sources],
        "not_pooled": "curves and per-task cells (see each source's table and plots)",
    }


def _spread(value: Optional[dict[str, Any]]) -> str:
    if not value:
        return format_spread(Spread(None, None, 0))
    return format_spread(Spread(value["mean"], value["std"], value["n"]))


def render_markdown(summary: dict[str, Any], command: str) -> str:
    """The pooled tables: over orders first (methods with every order), then each order."""
    header_keys = [k for k in summary["metrics"] if k.rpartition(".")[2] in SHOWN
                   and any(g["values"].get(k, {}).get("mean") is not None for r in summary["rows"] for g in r["orders"].values())]
    parts = [f"`{command}`", "", f"# {summary['sweep']}", "", f"Values: {summary['std']}", "",
             "Pooled from: " + "; ".join(f"`{s['file']}` (`{s['command']}`)" for s in summary["pooled_from"]) + ".",
             f"Not pooled: {summary['not_pooled']}.", ""]
    scopes = ([OVERALL] if any(r[OVERALL] for r in summary["rows"]) else []) + [
        scope_name(o) for o in summary["orders"]]
    for scope in scopes:
        body = []
        for row in summary["rows"]:
            group = row[OVERALL] if scope == OVERALL else row["orders"].get(scope)
            if not group:
                continue
            runs = ", ".join(map(scope_name, group["orders"])) if scope == OVERALL else ", ".join(map(str, group["seeds"]))
            body.append([row["method"], runs, *(_spread(group["values"].get(k)) for k in header_keys)])
        header = ["method", "orders" if scope == OVERALL else "seeds", *(summary["metrics"][k] for k in header_keys)]
        parts += [f"## {scope}", "", markdown_table(header, body), ""]
    return "\n".join(parts)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="grid result JSONs (grid.py, gpu_grid.py or this script)")
    parser.add_argument("--out", required=True, help="the output's name in benchmarks/results/, without extension")
    parser.add_argument("--only", default="", help="comma-separated method labels to keep (default: all)")
    args = parser.parse_args(argv)
    if "/" in args.out or args.out in ("", ".", ".."):
        print(f"error: --out takes a file name without folder, not {args.out!r}", file=sys.stderr)
        return 2
    only = [label.strip() for label in args.only.split(",") if label.strip()]
    try:
        sources = [(path, read_result(path)) for path in args.results]
        rows = pool(sources, only)
    except MergeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    summary = summarise(rows, sources)
    command = "python benchmarks/merge_grids.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render_markdown(summary, command)
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json_atomic(RESULTS / f"{args.out}.json", {"command": command, "machine": machine(), "summary": summary})
    write_text_atomic(RESULTS / f"{args.out}.md", text)
    print(text)
    print(f"-> {RESULTS / args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
