"""Where a grid's classifier runs put their union-label-space errors after the last task.

Scored in the union label space (``label_space: union``, class-incremental), an example of an old
task can be answered with any class of any task. This reads the predictions each run saved for
the final matrix row (``predictions/rowNN_<task>.jsonl``: ``target`` and ``union_prediction``)
and splits the union answers of every example in three: inside its own task's labels, in the
labels of the last task trained (the head's recency bias), or in another task's labels. A label
several tasks share counts as the most recent of them. A task's labels are the targets its dev
records hold.

Per method of the grid (``summary.json`` of its sweep folder gives the methods and their runs):
the union AP of the final row and the three shares, each the mean over all examples of all
tasks but the last, then mean ± std over the method's runs.

    python benchmarks/union_errors.py minilm-seekr-ablations [--sweeps benchmarks/results/sweeps]

Writes ``benchmarks/results/union_errors_<grid>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, write_result  # noqa: E402

from retain.reporting.aggregate import format_spread, spread  # noqa: E402

SHARES = ("own", "last", "other")


def final_predictions(run_dir: Path) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """The run's tasks in training order and, per task, the prediction records of the final row."""
    matrix = json.loads((run_dir / "matrix.json").read_text(encoding="utf-8"))
    order = [matrix["task_names"][i] for i in matrix["phase_task_index"]]
    row = len(matrix["rows"]) - 1
    records = {}
    for task in order:
        path = run_dir / "predictions" / f"row{row:02d}_{task}.jsonl"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: the run did not save the final row's predictions (eval.save_predictions)")
        # split on newlines only: prompts hold U+2028, which splitlines() would cut at
        records[task] = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]
    return order, records


def run_shares(run_dir: Path) -> dict[str, float]:
    """Union AP of the final row, and the shares (%) of old-task examples by where their union answer lies."""
    order, records = final_predictions(run_dir)
    if len(order) < 2:
        raise ValueError(f"{run_dir.name} trained one phase (multi-task): no last task to be biased to")
    labels = {task: {r["target"] for r in rows} for task, rows in records.items()}
    newest_owner = {label: task for task in order for label in labels[task]}  # later tasks overwrite
    last = order[-1]
    counts = dict.fromkeys(SHARES, 0)
    for task in order[:-1]:
        for record in records[task]:
            answer = record["union_prediction"]
            if answer in labels[task]:
                counts["own"] += 1
            elif newest_owner.get(answer) == last:
                counts["last"] += 1
            else:
                counts["other"] += 1
    total = sum(counts.values())
    ap = statistics.fmean(100 * statistics.fmean(r["union_score"] for r in records[t]) for t in order)
    return {"union_ap": ap, **{k: 100 * v / total for k, v in counts.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid")
    parser.add_argument("--sweeps", type=Path, default=RESULTS / "sweeps")
    args = parser.parse_args()
    summary_path = args.sweeps / args.grid / "summary.json"
    if not summary_path.is_file():
        print(f"error: {summary_path} not found: run the grid first (python benchmarks/grid.py {args.grid})", file=sys.stderr)
        return 2
    summary = json.loads(summary_path.read_text(encoding="utf-8"))
    methods = []
    for row in summary["rows"]:
        runs = [Path(run) for cell in row["orders"].values() for run in cell["runs"]]
        per_run = {}
        for run in runs:
            try:
                per_run[run.name] = run_shares(run)
            except (FileNotFoundError, ValueError) as why:
                print(f"skipped {run.name}: {why}", file=sys.stderr)
        if per_run:
            methods.append({"method": row["method"], "runs": per_run})
    lines = [
        f"# Union-space answers after the last task: {args.grid}", "",
        "Old tasks' examples (every task but the last), by where their union-space answer lies: inside",
        "their own task's labels, in the labels of the last task trained, or in another task's. Mean ± std",
        "over the runs (n). Written by `python benchmarks/union_errors.py " + args.grid + "`.", "",
        "| method | n | AP union (final row) | own labels % | last task's labels % | other tasks' labels % |",
        "|---|---|---|---|---|---|",
    ]
    for entry in methods:
        values = list(entry["runs"].values())
        cells = [format_spread(spread(v[key] for v in values), digits=1, show_n=False) for key in ("union_ap", *SHARES)]
        lines.append(f"| {entry['method']} | {len(values)} | " + " | ".join(cells) + " |")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"union_errors_{args.grid}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_result(f"union_errors_{args.grid}", {"command": f"python benchmarks/union_errors.py {args.grid}", "methods": methods})
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
