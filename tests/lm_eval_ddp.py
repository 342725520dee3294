"""One lm-eval run (tests/lm_eval_fixture.py's config) in this process group. Not a test module.

    torchrun --nproc_per_node 2 tests/lm_eval_ddp.py ROOT OUT [SHARDING]

SHARDING: a ``train.sharding`` mode (``none``, the default: DDP; ``fsdp``).

Each process writes ``OUT/calls-<rank>.json``: the sets it scored with lm-eval (the test checks
that only process 0 did); the main process writes ``OUT/general.json``, the run's general rows.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(root: Path, out: Path, sharding: str = "none") -> None:
    import torch

    torch.set_num_threads(1)
    import retain
    import retain.evaluation.lm_eval_general as lm_eval_general
    from tests.lm_eval_fixture import run_config

    calls = []
    evaluate_sets = lm_eval_general.evaluate_sets

    def counted(model, tokenizer, specs, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls.extend(spec.name for spec in specs)
        return evaluate_sets(model, tokenizer, specs, *args, **kwargs)

    lm_eval_general.evaluate_sets = counted
    world = int(os.environ.get("WORLD_SIZE", "1"))
    train = {"sharding": sharding} if world > 1 else {}
    result = retain.run(run_config(root, out / "runs", grad_accum=2 if world == 1 else 1, train=train), quiet=True)
    rank = int(os.environ.get("RANK", "0"))
    (out / f"calls-{rank}.json").write_text(json.dumps(calls))
    if result.is_main:
        shutil.copy(result.run_dir / "general.json", out / "general.json")


if __name__ == "__main__":
    from retain.engine.collective import end_process_group

    main(Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:4])
    end_process_group()
