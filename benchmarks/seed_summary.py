"""Mean and spread over seeds of real-weights results: one row per run spec.

A single seed with 100 dev examples per task moves AP by a few points, which is as large as the
differences the methods' papers report; averaging the same specs over several seeds tells a method's
effect from the noise. Reads result files written by ``real_weights.py`` (one per seed, or several
files sharing a seed: a spec seen twice with the same seed is counted once) and writes
``benchmarks/results/<out>.json`` and ``.md``:

    python benchmarks/real_weights.py --out seekr_seed1 --seed 1 replay:ratio=0.01 seekr:ratio=0.01
    python benchmarks/seed_summary.py --out seekr_seeds seekr seekr_seed1 seekr_seed2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, write_result  # noqa: E402

from retain.reporting.aggregate import spread as seed_spread  # noqa: E402


def collect(names: list[str]) -> tuple[dict[str, dict[int, dict[str, Any]]], list[str]]:
    """spec -> seed -> run record, and the task names (all files must share the stream)."""
    by_spec: dict[str, dict[int, dict[str, Any]]] = {}
    task_names: Optional[list[str]] = None
    for name in names:
        path = RESULTS / f"{name}.json"
        if not path.is_file():
            raise SystemExit(f"error: {path} not found (run benchmarks/real_weights.py --out {name} first)")
        payload = json.loads(path.read_text())
        seed = int(payload["settings"]["seed"])
        for run in payload["runs"]:
            names_here = run["matrix"]["task_names"]
            if task_names is None:
                task_names = names_here
            elif names_here != task_names:
                raise SystemExit(f"error: {path}: tasks {names_here} differ from {task_names}")
            by_spec.setdefault(run["spec"], {}).setdefault(seed, run)
    return by_spec, task_names or []


def spread(values: list[Optional[float]]) -> dict[str, Any]:
    """Mean, sample std (ddof=1) and n over seeds, as every retain table computes them."""
    return seed_spread(values).to_dict()


def summarise(runs: dict[int, dict[str, Any]], task_names: list[str]) -> dict[str, Any]:
    seeds = sorted(runs)
    metric = {key: spread([runs[s]["metrics"][key]["value"] for s in seeds]) for key in ("ap", "bwt", "forgetting")}
    finals = [runs[s]["matrix"]["rows"][-1] for s in seeds]
    per_task = {task: spread([row[i] for row in finals]) for i, task in enumerate(task_names)}
    return {"seeds": seeds, **metric, "final_row": per_task, "ap_per_seed": [runs[s]["metrics"]["ap"]["value"] for s in seeds]}


def cell(value: dict[str, Optional[float]]) -> str:
    if value["mean"] is None:
        return "—"
    return f"{value['mean']:.2f}" if value["std"] is None else f"{value['mean']:.2f} ± {value['std']:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", help="result names under benchmarks/results/ (without .json)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if Path(args.out).name != args.out:
        parser.error(f"--out {args.out!r}: a plain name; results go to {RESULTS}")

    by_spec, task_names = collect(args.results)
    summary = {spec: summarise(runs, task_names) for spec, runs in by_spec.items()}
    header = ["run", "seeds", "AP", "BWT (GEM)", "Forgetting", *task_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for spec, row in summary.items():
        cells = [spec, ",".join(map(str, row["seeds"])), cell(row["ap"]), cell(row["bwt"]), cell(row["forgetting"])]
        cells += [cell(row["final_row"][task]) for task in task_names]
        lines.append("| " + " | ".join(cells) + " |")
    table = "\n".join(lines)
    command = "python benchmarks/seed_summary.py " + " ".join(sys.argv[1:])
    path = write_result(args.out, {"command": command, "sources": args.results, "specs": summary, "table_markdown": table})
    (RESULTS / f"{args.out}.md").write_text(
        f"# {args.out}\n\n`{command}`\n\nMean ± sample standard deviation over seeds of the final-row metrics "
        f"(accuracy, %).\n\n{table}\n"
    )
    print(table)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
