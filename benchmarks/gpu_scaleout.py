"""Scale-out cells on one GPU: every method under FSDP2, DeepSpeed ZeRO-2 and ZeRO-3, one process, bf16.

One ``torchrun --nproc_per_node 1`` launch per sharding mode runs every method in sequence on a
small built-in model (``builtin:tiny-llama``, the demo stream); a method the engine refuses under
a mode is recorded with the refusal message, one that fails with the error. Per cell: status,
wall time, peak GPU memory, the accuracy matrix and AP. Sized for under 8 minutes on an
H100/H200-class GPU (one process: sharding over one rank, so the numbers say that the path runs
and what it costs, not how it scales).

``--cpu-smoke`` runs two FSDP cells (plain fine-tuning, and O-LoRA, whose adapters change
between tasks) on a tiny stream on gloo CPU processes, so the script keeps working without a GPU
(a test runs it that way); a refused cell would be recorded with its reason.

    python benchmarks/gpu_scaleout.py OUT [--modes fsdp,zero2,zero3] [--methods seqft,ewc]
    python benchmarks/gpu_scaleout.py OUT --cpu-smoke

Writes ``OUT/gpu_scaleout.json`` (all cells) and one ``OUT/cells/<mode>-<method>.json`` per cell.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

MODES = ("fsdp", "zero2", "zero3")
#: method cell -> method list (every registered method; KIF-M is KIF with a replay buffer)
METHODS: dict[str, list[Any]] = {
    "seqft": ["seqft"],
    "seqlora": ["seqlora"],
    "single": ["single"],
    "mtl": ["mtl"],
    "replay": [{"name": "replay", "ratio": 0.1}],
    "der": [{"name": "der", "ratio": 0.1}],
    "seekr": [{"name": "seekr", "ratio": 0.1, "heads": 2, "query_budget": 8}],
    "ewc": [{"name": "ewc", "lam": 100.0}],
    "lwf": ["lwf"],
    "migu": ["migu"],
    "kif": ["kif"],
    "olora": ["olora"],
}
SMOKE_METHODS = ["seqft", "olora"]


def cell_config(out: Path, mode: str, method: str, smoke: bool) -> dict[str, Any]:
    size = {"demo_tasks": 2, "demo_train_size": 8, "demo_eval_size": 4} if smoke else {
        "demo_tasks": 3, "demo_train_size": 256, "demo_eval_size": 32,
    }
    return {
        "name": f"{mode}-{method}",
        "output_dir": str(out / "runs"),
        "seed": 42,
        "model": {"name_or_path": "builtin:tiny-llama", "lora": {"dropout": 0.0}},
        "stream": {"benchmark": "demo", **size},
        "train": {
            "epochs": 1, "batch_size": 4 if smoke else 16, "lr": 1e-3, "sharding": mode,
            "mixed_precision": "no" if smoke else "bf16",
        },
        "eval": {"batch_size": 4 if smoke else 32, "max_new_tokens": 4 if smoke else 8},
        "methods": METHODS[method],
    }


def run_cells(mode: str, out: Path, methods: list[str], smoke: bool) -> None:
    """Inside the launch: every method's cell under ``mode``, one after another."""
    import torch

    import retain
    from retain.errors import RetainError

    cells = out / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    cuda = torch.cuda.is_available()
    for method in methods:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        started = time.perf_counter()
        cell: dict[str, Any] = {"mode": mode, "method": method}
        try:
            result = retain.run(cell_config(out, mode, method, smoke), quiet=True, overwrite=True)
        except RetainError as error:  # refused at start-up: the reason is the message
            cell.update(status="refused", reason=str(error))
        except Exception as error:  # noqa: BLE001 - a failing cell is a result, the next cell runs
            cell.update(status="failed", reason=f"{type(error).__name__}: {error}"[:2000])
        else:
            cell.update(status="ok", rows=result.matrix.rows, ap=result.metrics.get("ap"))
        cell["wall_s"] = round(time.perf_counter() - started, 2)
        if cuda:
            cell["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if int(os.environ.get("RANK", "0")) == 0:
            (cells / f"{mode}-{method}.json").write_text(json.dumps(cell, indent=2, default=float))


def launch(mode: str, out: Path, methods: list[str], smoke: bool, timeout: float) -> dict[str, Any]:
    """One torchrun launch (one process) for ``mode``; returns what the launch itself did."""
    torchrun = Path(sys.executable).parent / "torchrun"
    command = [
        str(torchrun), "--standalone", "--nproc_per_node", "1", str(Path(__file__).resolve()),
        str(out), "--worker", mode, "--methods", ",".join(methods), *(["--cpu-smoke"] if smoke else []),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "4")}
    started = time.perf_counter()
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        status, tail = done.returncode, done.stderr[-2000:]
    except subprocess.TimeoutExpired as expired:
        status, tail = "timeout", str(expired.stderr or "")[-2000:]
    return {"mode": mode, "returncode": status, "wall_s": round(time.perf_counter() - started, 1), "stderr_tail": tail}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="output folder (JSON results, run folders)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--methods", default=None, help="comma-separated method cells (default: all)")
    parser.add_argument("--cpu-smoke", action="store_true", help="two tiny FSDP cells on the CPU (tests)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--timeout", type=float, default=150.0, help="seconds per launch (one mode)")
    args = parser.parse_args()
    out: Path = args.out
    methods = args.methods.split(",") if args.methods else (SMOKE_METHODS if args.cpu_smoke else list(METHODS))
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown cell(s) {', '.join(unknown)} (known: {', '.join(METHODS)})")
    if args.worker:
        run_cells(args.worker, out, methods, args.cpu_smoke)
        return
    modes = ["fsdp"] if args.cpu_smoke else args.modes.split(",")
    bad = [m for m in modes if m not in MODES]
    if bad:
        parser.error(f"--modes: unknown mode(s) {', '.join(bad)} (known: {', '.join(MODES)})")
    out.mkdir(parents=True, exist_ok=True)
    launches = [launch(mode, out, methods, args.cpu_smoke, args.timeout) for mode in modes]
    cells = []
    for mode in modes:
        for method in methods:
            path = out / "cells" / f"{mode}-{method}.json"
            cells.append(json.loads(path.read_text()) if path.is_file() else {"mode": mode, "method": method, "status": "missing"})
    payload = {"machine": machine(), "smoke": args.cpu_smoke, "launches": launches, "cells": cells}
    target = out / "gpu_scaleout.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"benchmark": "gpu_scaleout", **payload}, indent=2, default=float))
    os.replace(tmp, target)  # a reader never sees half a file
    for cell in cells:
        print(f"{cell['mode']:6} {cell['method']:8} {cell['status']:8} {cell.get('wall_s', '')}s  {cell.get('reason', '')[:100]}")


if __name__ == "__main__":
    main()
