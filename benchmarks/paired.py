"""Paired per-seed differences between two methods of one grid: method A minus method B, seed by
seed, on one order (or on every order), for each asked metric, then their mean.

Two runs of one seed share the data sample, the task order and the initial weights, so their
difference is less noisy than the gap between two means ± std; docs/results.md quotes these.

    python benchmarks/paired.py benchmarks/results/grid_minilm-classifier.o1.json migu seqft
    python benchmarks/paired.py RESULT.json kif seqlora --metrics ap,bwt,la --order all

Reads each run's values from the result's ``per_run`` entries; a result written before those
existed is read from the run folders it lists (which must then still be on this machine).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

DEFAULT_METRICS = ("ap", "bwt", "la")


def _row(summary: dict[str, Any], method: str) -> dict[str, Any]:
    for row in summary["rows"]:
        if row["method"] == method:
            return row
    names = ", ".join(r["method"] for r in summary["rows"])
    raise SystemExit(f"error: no method {method!r} in this result (methods: {names})")


@functools.lru_cache(maxsize=None)
def _folder_values(path: str) -> dict[str, Any]:
    """A run folder's values, read once however many metrics and pairs ask for them."""
    from retain.reporting.aggregate import read_run

    return read_run(path).values


def per_seed_values(group: dict[str, Any], metric: str) -> dict[Any, Optional[float]]:
    """seed -> the run's value of ``metric`` in one order's group summary."""
    if "per_run" in group:
        values = group["per_run"].get(metric, [None] * len(group["seeds"]))
    else:  # an older result: read the run folders it names
        values = [_folder_values(path).get(metric) for path in group["runs"]]
    return dict(zip(group["seeds"], values))


def paired_differences(summary: dict[str, Any], a: str, b: str, order: Optional[int], metric: str) -> list[tuple[str, float]]:
    """(cell, A - B) for every seed both methods ran on ``order`` with a defined value, in A's seed
    order; ``order`` None pairs every (order, seed) cell both ran, cells named 'o2 s42'."""
    rows = [_row(summary, m)["orders"] for m in (a, b)]
    scopes = [f"order {order}"] if order is not None else [s for s in rows[0] if s in rows[1]]
    pairs: list[tuple[str, float]] = []
    for scope in scopes:
        groups = [r.get(scope) for r in rows]
        if not all(groups):
            raise SystemExit(f"error: {a!r} and {b!r} do not both have runs on {scope}")
        values_a, values_b = (per_seed_values(g, metric) for g in groups)  # type: ignore[arg-type]
        prefix = "" if order is not None else "o" + scope.rpartition(" ")[2] + " "
        pairs += [(f"{prefix}s{seed}", va - values_b[seed]) for seed, va in values_a.items()
                  if va is not None and values_b.get(seed) is not None]
    return pairs


def render(summary: dict[str, Any], a: str, b: str, order: Optional[int], metrics: Sequence[str]) -> str:
    """One line per metric: 'ap: +0.50 (s42) +3.60 (s1) +8.60 (s2); mean +4.23 (n=3)'."""
    where = f"order {order}" if order is not None else "every order"
    lines = [f"{a} - {b}, {where}, paired by seed:"]
    for metric in metrics:
        diffs = paired_differences(summary, a, b, order, metric)
        if not diffs:
            lines.append(f"  {metric}: no seed with a value for both")
            continue
        cells = " ".join(f"{d:+.2f} ({cell})" for cell, d in diffs)
        mean = sum(d for _, d in diffs) / len(diffs)
        lines.append(f"  {metric}: {cells}; mean {mean:+.2f} (n={len(diffs)})")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("result", type=Path, help="a grid result JSON (grid.py or gpu_grid.py)")
    parser.add_argument("a", help="method label (the table's first column)")
    parser.add_argument("b", help="the method it is compared with")
    parser.add_argument("--order", default="1",
                        help="the order whose seeds are paired (default 1), or 'all': every (order, seed) cell")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS),
                        help="comma-separated metric keys, e.g. ap,bwt,la,union.ap (default ap,bwt,la)")
    args = parser.parse_args(argv)
    if not args.result.is_file():
        print(f"error: no result file {args.result}", file=sys.stderr)
        return 2
    if args.order != "all" and not args.order.isdigit():
        print(f"error: --order takes an order number or 'all', not {args.order!r}", file=sys.stderr)
        return 2
    order = None if args.order == "all" else int(args.order)
    try:
        summary = json.loads(args.result.read_text(encoding="utf-8"))["summary"]
    except (ValueError, KeyError, TypeError) as err:
        print(f"error: {args.result} is not a grid result JSON ({err!r})", file=sys.stderr)
        return 2
    print(render(summary, args.a, args.b, order, [m for m in args.metrics.split(",") if m]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
