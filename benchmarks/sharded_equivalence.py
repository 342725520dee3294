"""2 processes against 1: the largest final-weight difference per scenario, for docs/scale-out.md.

Launches what ``pytest -m slow tests/test_sharded.py`` launches for one mode: every scenario of
``tests/ddp_equivalence.py`` whose methods claim it, in 2 sharded gloo CPU processes (batch 3,
``grad_accum`` 1) and in 1 unsharded process (batch 3, ``grad_accum`` 2: the same global batch),
side by side. Checks what the tests check (equal matrices and micro-batch counts) and writes the
mode's cells into ``benchmarks/results/sharded_equivalence.json``, keeping the other modes'.

    python benchmarks/sharded_equivalence.py fsdp [SCENARIO...]     # default: every claiming scenario
    python benchmarks/sharded_equivalence.py zero3                  # likewise zero2 (needs deepspeed)
    python benchmarks/sharded_equivalence.py ddp                    # the DDP column (every scenario)

``ddp`` launches what ``pytest -m slow tests/test_distributed.py`` launches: plain data
parallelism (2 gloo processes, no sharding) against the same single process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import RESULTS  # noqa: E402

RESULT = RESULTS / "sharded_equivalence.json"


def weight_difference(single: Path, double: Path, scenario: str) -> float:
    """The largest difference of any final weight; raises if the runs differ otherwise."""
    from safetensors.torch import load_file

    one = json.loads((single / f"{scenario}.json").read_text())
    two = json.loads((double / f"{scenario}.json").read_text())
    if one["rows"] != two["rows"]:
        raise SystemExit(f"{scenario}: the matrices differ")
    for phase_one, phase_two in zip(one["phases"], two["phases"], strict=True):
        if (phase_one["new"], phase_one["replay"]) != (phase_two["new"], phase_two["replay"]):
            raise SystemExit(f"{scenario}: micro-batch counts differ")
    weights_one = load_file(str(single / f"{scenario}.safetensors"))
    weights_two = load_file(str(double / f"{scenario}.safetensors"))
    if weights_one.keys() != weights_two.keys():
        raise SystemExit(f"{scenario}: the checkpoints hold different tensors")
    return max(float((weights_one[k].float() - weights_two[k].float()).abs().max()) for k in weights_one)


def main() -> None:
    from tests import test_distributed
    from tests.ddp_equivalence import SCENARIOS
    from tests.test_sharded import _claims, _launch

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("ddp", "fsdp", "zero2", "zero3"))
    parser.add_argument("scenarios", nargs="*", help="default: every scenario whose methods claim the mode")
    args = parser.parse_args()
    scenarios = args.scenarios or (list(SCENARIOS) if args.mode == "ddp" else _claims(args.mode))
    with tempfile.TemporaryDirectory() as folder:
        if args.mode == "ddp":
            single, double = test_distributed.launch_side_by_side(
                Path(folder), scenarios, [str(test_distributed.DRIVER)], test_distributed.ENV,
                timeout_two=2400, timeout_one=2400,
            )
        else:
            single, double = _launch(Path(folder), args.mode, scenarios, timeout=2400)
        cells = {name: float(f"{weight_difference(single, double, name):.3g}") for name in scenarios}
    import accelerate
    import torch

    payload: dict[str, Any] = json.loads(RESULT.read_text()) if RESULT.is_file() else {"benchmark": "sharded_equivalence"}
    payload.setdefault("cells", {})[args.mode] = dict(sorted(cells.items()))
    payload.setdefault("measured", {})[args.mode] = {
        "date": datetime.date.today().isoformat(), "torch": torch.__version__, "accelerate": accelerate.__version__,
        "command": f"python benchmarks/sharded_equivalence.py {args.mode}",
    }
    if args.mode in ("zero2", "zero3"):
        import deepspeed

        payload["measured"][args.mode]["deepspeed"] = deepspeed.__version__
    tmp = RESULT.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, RESULT)
    for name, diff in sorted(cells.items()):
        print(f"{args.mode} {name}: {diff:.3g}")


if __name__ == "__main__":
    main()
