"""The compact table of a grid's summary for docs/results.md: per method, over orders 1-3 and on
order 1 (its seeds), task label space beside union label space, mean ± std (n).

    python benchmarks/grid_table.py benchmarks/results/grid_minilm-classifier.gpu.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

COLUMNS = (  # (header, scope, metric key)
    ("AP", "overall", "ap"), ("BWT", "overall", "bwt"), ("LA", "overall", "la"),
    ("AP o1", "order 1", "ap"), ("BWT o1", "order 1", "bwt"),
    ("AP union", "overall", "union.ap"), ("BWT union", "overall", "union.bwt"),
)


def cell(value: Optional[dict[str, Any]]) -> str:
    """'53.15 ± 5.94 (3)'; '—' when the metric is undefined (e.g. BWT of multi-task training)."""
    if not value or value.get("mean") is None:
        return "—"
    std = value.get("std")
    spread = f" ± {std:.2f}" if std is not None else ""
    return f"{value['mean']:.2f}{spread} ({value['n']})"


#: a grid (or subset) of order 1 alone has no over-orders values: its own columns
ORDER_1_COLUMNS = (
    ("AP o1", "order 1", "ap"), ("BWT o1", "order 1", "bwt"), ("LA o1", "order 1", "la"),
    ("AP union o1", "order 1", "union.ap"), ("BWT union o1", "order 1", "union.bwt"),
)


def table(summary: dict[str, Any]) -> str:
    columns = COLUMNS if any(row.get("overall") for row in summary["rows"]) else ORDER_1_COLUMNS
    lines = ["| method | " + " | ".join(h for h, _, _ in columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in summary["rows"]:
        # "overall" is absent (None) when the grid (or the subset run) has one order
        scopes = {"overall": (row.get("overall") or {}).get("values", {}),
                  "order 1": (row["orders"].get("order 1") or {}).get("values", {})}
        lines.append(f"| {row['method']} | " + " | ".join(cell(scopes[s].get(k)) for _, s, k in columns) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("result", type=Path, help="a grid result JSON (grid.py or gpu_grid.py)")
    args = parser.parse_args()
    if not args.result.is_file():
        print(f"error: no result file {args.result}", file=sys.stderr)
        return 2
    print(table(json.loads(args.result.read_text(encoding="utf-8"))["summary"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
