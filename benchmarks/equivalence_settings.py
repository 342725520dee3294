"""2 processes against 1 at the settings of a reported measurement, over seeds, for docs/scale-out.md.

The scenarios of ``tests/ddp_equivalence.py`` that change its stream (``SETTINGS``: 3 tasks of
48 or 50 examples at batch 4, 9 evaluation examples at eval batch 4, plain fine-tuning and EWC
at the demo's lam 1e6), run as the tests run them: 2 gloo CPU processes (``grad_accum`` 1, the
mode's sharding) beside 1 unsharded process (``grad_accum`` 2: the same global batch). Per seed
and scenario it checks the micro-batch counts the tests check and records the largest
final-weight difference, the largest relative difference of the step logs' loss and gradient
norm, and whether the matrices are equal.

Beside them, a probe of how far rounding alone carries a run: the same single process again
with the learning rate larger by one part in 1e7 (about one float32 rounding of every update).
A 2-process difference of the probe's order is what summing in another order gives; one far
above it is a fault. Results go to ``benchmarks/results/equivalence_settings.json`` under
``MODE/epochs-E``, one cell per scenario with the command that measured it (the other cells kept).

    python benchmarks/equivalence_settings.py ddp --seeds 7 1 2              # 1 epoch, as the tests
    python benchmarks/equivalence_settings.py fsdp --seeds 7 1 2
    python benchmarks/equivalence_settings.py ddp --seeds 7 --epochs 8      # the demo's epochs
    python benchmarks/equivalence_settings.py zero2 --seeds 7               # likewise zero3 (needs deepspeed)
    python benchmarks/equivalence_settings.py fsdp replay --seeds 7 1 2     # any scenario of the driver
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import RESULTS, machine  # noqa: E402

RESULT = RESULTS / "equivalence_settings.json"


#: the probe's learning rate, relative to the runs' (one part in 1e7)
PROBE_SCALE = 1 + 1e-7


def _rounded(value: Optional[float]) -> Optional[float]:
    return None if value is None else float(f"{value:.3g}")


def _largest(values: list[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _shown(value: Optional[float]) -> str:
    return "not logged" if value is None else f"{value:.3g}"


def _difference(one: Path, two: Path, name: str) -> dict[str, Any]:
    """Largest final-weight difference, largest relative step-log differences, and whether the
    matrices are equal (the probe's may not be: a rounding can flip a greedy answer)."""
    from safetensors.torch import load_file

    from tests import test_distributed

    weights_one, weights_two = load_file(str(one / f"{name}.safetensors")), load_file(str(two / f"{name}.safetensors"))
    if weights_one.keys() != weights_two.keys():
        raise SystemExit(f"{name}: the checkpoints hold different tensors")
    weights = max(float((weights_one[k].float() - weights_two[k].float()).abs().max()) for k in weights_one)
    logged = test_distributed.step_log_difference(one, two, name)
    rows = [json.loads((folder / f"{name}.json").read_text())["rows"] for folder in (one, two)]
    return {
        "weights": float(f"{weights:.3g}"),
        "loss": _rounded(logged.get("train/loss")),
        "grad_norm": _rounded(logged.get("train/grad_norm")),  # None: not logged (DeepSpeed)
        "matrices_equal": rows[0] == rows[1],
    }


def _same_micro_batches(one: Path, two: Path, name: str) -> None:
    """What the tests check beside the weights: the micro-batches trained per task, summed over
    processes, and as many on every process."""
    first, second = (json.loads((folder / f"{name}.json").read_text())["phases"] for folder in (one, two))
    for phase_one, phase_two in zip(first, second, strict=True):
        if (phase_one["new"], phase_one["replay"]) != (phase_two["new"], phase_two["replay"]):
            raise SystemExit(f"{name}: micro-batch counts differ")
        if len(set(phase_two["micro_batches_per_process"])) != 1:
            raise SystemExit(f"{name}: processes ran different numbers of micro-batches")


def _measure(mode: str, scenarios: list[str], seed: int, epochs: float, folder: Path) -> dict[str, dict[str, Any]]:
    """The 2-process and probe differences from the single process, per scenario, for one seed."""
    from tests import ddp_equivalence, test_distributed, test_sharded

    varied = {"seed": seed, "train": {"epochs": epochs}}
    env = {**(test_distributed.ENV if mode == "ddp" else test_sharded.ENV), "RETAIN_EQUIVALENCE_VARIED": json.dumps(varied)}
    probe_dir = folder / "probe"
    probe_dir.mkdir(parents=True)
    probe_varied = {"seed": seed, "train": {"epochs": epochs, "lr": ddp_equivalence.TRAIN["lr"] * PROBE_SCALE}}
    probe = subprocess.Popen(
        [sys.executable, str(test_distributed.DRIVER), str(probe_dir), "2", *scenarios],
        env={**test_distributed.ENV, "RETAIN_EQUIVALENCE_VARIED": json.dumps(probe_varied)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        driver = [str(test_distributed.DRIVER)] if mode == "ddp" else [str(test_sharded.DRIVER), mode]
        single, double = test_distributed.launch_side_by_side(
            folder / "pair", scenarios, driver, env, timeout_two=3600, timeout_one=3600
        )
        _, err = probe.communicate(timeout=3600)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    if probe.returncode != 0:
        raise SystemExit(f"the probe run failed: {err[-3000:]}")
    for name in scenarios:
        _same_micro_batches(single, double, name)
    return {
        name: {"two_processes": _difference(single, double, name), "probe": _difference(single, probe_dir, name)}
        for name in scenarios
    }


def main() -> None:
    from tests.ddp_equivalence import SETTINGS
    from tests.test_sharded import _claims

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("ddp", "fsdp", "zero2", "zero3"))
    parser.add_argument("scenarios", nargs="*", help="default: every SETTINGS scenario whose methods claim the mode")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7], help="the runs' seeds (the tests use 7)")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs per task (the tests: 1; the demo config: 8)")
    args = parser.parse_args()
    claimed = set(_claims(args.mode)) if args.mode != "ddp" else set(SETTINGS)
    scenarios = args.scenarios or [name for name in SETTINGS if name in claimed]
    started = time.perf_counter()
    per_seed: dict[str, dict[str, dict[str, Any]]] = {}
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as folder:
            per_seed[str(seed)] = _measure(args.mode, scenarios, seed, args.epochs, Path(folder))
    cells: dict[str, Any] = {}
    for name in scenarios:
        values = [per_seed[str(seed)][name] for seed in args.seeds]
        cells[name] = {
            which: {key: _largest([v[which][key] for v in values]) for key in ("weights", "loss", "grad_norm")}
            | {"matrices_equal": all(v[which]["matrices_equal"] for v in values)}
            for which in ("two_processes", "probe")
        } | {"per_seed": {str(seed): per_seed[str(seed)][name] for seed in args.seeds}}
    import accelerate
    import torch

    payload: dict[str, Any] = json.loads(RESULT.read_text()) if RESULT.is_file() else {
        "benchmark": "equivalence_settings",
        "what": "2 gloo CPU processes (grad_accum 1) and the probe (1 process, lr x (1 + 1e-7)) against 1 unsharded "
                "process (grad_accum 2): the largest final-weight difference and the largest relative difference "
                "of the logged loss and gradient norm, max over seeds",
    }
    key = f"{args.mode}/epochs-{args.epochs:g}"
    command = " ".join(["python benchmarks/equivalence_settings.py", *sys.argv[1:]])
    measured = {
        "date": datetime.date.today().isoformat(), "torch": torch.__version__, "accelerate": accelerate.__version__,
        "command": command, "seeds": args.seeds, "machine": machine(), "backend": "gloo",
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    if args.mode in ("zero2", "zero3"):
        import deepspeed

        measured["deepspeed"] = deepspeed.__version__
    # each cell names the command that measured it; other scenarios of the same key are kept
    kept = payload.setdefault("cells", {}).setdefault(key, {})
    kept.update({name: {**cell, "command": command} for name, cell in cells.items()})
    payload["cells"][key] = dict(sorted(kept.items()))
    payload.setdefault("measured", {}).setdefault(key, {})[command] = measured
    payload["cells"] = dict(sorted(payload["cells"].items()))
    payload["measured"] = dict(sorted(payload["measured"].items()))
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, RESULT)
    for name, cell in cells.items():
        two, probe = cell["two_processes"], cell["probe"]
        print(f"{key} {name}: 2 processes: weights {_shown(two['weights'])}, loss {_shown(two['loss'])}, grad norm "
              f"{_shown(two['grad_norm'])}; probe: weights {_shown(probe['weights'])}, loss {_shown(probe['loss'])}, "
              f"grad norm {_shown(probe['grad_norm'])} (max over seeds {', '.join(map(str, args.seeds))})")


if __name__ == "__main__":
    main()
