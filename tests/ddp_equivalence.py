"""Runs every registered method on one tiny stream, one after another, in this process group.

Launched by ``tests/test_distributed.py`` twice: in two gloo processes (``torchrun``, batch B,
``grad_accum`` 1) and in one process (batch B, ``grad_accum`` 2: the same global batch), so that
the two can be compared run by run. Not a test module itself (pytest does not collect it).

    python tests/ddp_equivalence.py OUT GRAD_ACCUM SCENARIO...

For each scenario the main process writes ``OUT/<scenario>.json`` (the matrix, and per phase the
new/replay micro-batches trained, summed over processes) and ``OUT/<scenario>.safetensors`` (the
final weights the run checkpointed).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: the stream every scenario trains on: 2 tasks, 24 training examples each, batch 3 per process,
#: so 8 new micro-batches per task (4 per process) and replay buffers of 6 examples (2 batches)
TRAIN = {"epochs": 1, "batch_size": 3, "lr": 3e-3}
REPLAY = {"ratio": 0.25, "schedule": "interleaved"}
#: scenario -> method list (every registered method appears; KIF-M is KIF with a replay buffer)
SCENARIOS: dict[str, list[Any]] = {
    "seqft": ["seqft"],
    "seqlora": ["seqlora"],
    "single": ["single"],
    "mtl": ["mtl"],
    "replay": [{"name": "replay", "ratio": 0.25}],
    "replay-interleaved": [{"name": "replay", **REPLAY}],
    "der": [{"name": "der", "ratio": 0.25}],
    "seekr": [{"name": "seekr", "ratio": 0.25, "heads": 2, "query_budget": 4}],
    "ewc": [{"name": "ewc", "lam": 100.0}],
    "lwf": ["lwf"],
    "olora": ["olora"],
    "migu": ["migu"],
    "kif": ["kif"],
    "kif-m": ["kif", {"name": "replay", "ratio": 0.25}],
    # KIF's own setting: LoRA rank units (rows of A, columns of B), the orthogonality loss, and
    # KIF-M's partially frozen A and B (above: full fine-tuning, one unit per weight matrix)
    "kif-lora": ["seqlora", "kif"],
    "kif-m-lora": ["seqlora", "kif", {"name": "replay", "ratio": 0.25}],
    # one replay example: a one-batch buffer, fewer batches than processes (hung before)
    "small-buffer-seekr": [{"name": "seekr", "count": 1, "heads": 2, "query_budget": 4}],
    "small-buffer-der": [{"name": "der", "count": 1}],
    # 9 micro-batches on task 2: a weightless pad on the second process, which MIGU must not measure
    "migu-pad": ["migu", {"name": "replay", "count": 1, "schedule": "interleaved"}],
    # the CI subset in one run: a one-batch SEEKR buffer and EWC's Fisher together
    "small-buffer-seekr-ewc": [{"name": "seekr", "count": 1, "heads": 2, "query_budget": 4}, {"name": "ewc", "lam": 100.0}],
}


def _config(out: Path, name: str, methods: list[Any], grad_accum: int) -> dict[str, Any]:
    return {
        "name": name,
        "output_dir": str(out / "runs"),
        "seed": 7,
        # LoRA dropout 0: dropout masks are drawn per process, so with dropout two processes match one
        # only in distribution, not weight for weight
        "model": {"name_or_path": "builtin:tiny-llama", "lora": {"dropout": 0.0}},
        "stream": {"benchmark": "demo", "demo_tasks": 2, "demo_train_size": 24, "demo_eval_size": 6},
        "train": {**TRAIN, "grad_accum": grad_accum},
        "eval": {"batch_size": 1, "max_new_tokens": 4},
        "methods": methods,
    }


def main(out: Path, grad_accum: int, scenarios: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    import retain
    import retain.engine.runner as runner
    from retain.engine.collective import gather_objects

    counts: list[dict[str, int]] = []
    train_phase = runner.train_phase

    def counting(ctx: Any, hooks: Any, plan: Any, *args: Any, **kwargs: Any) -> Any:
        counts.append({"new": plan.count("new"), "replay": plan.count("replay"), "micro_batches": len(plan)})
        return train_phase(ctx, hooks, plan, *args, **kwargs)

    runner.train_phase = counting
    # The report (plots) is half a tiny run's time and no part of the comparison.
    runner.ContinualRunner._write_report = lambda self, ctx, methods: None  # type: ignore[method-assign]
    for name in scenarios:
        counts.clear()
        result = retain.run(_config(out, name, SCENARIOS[name], grad_accum), quiet=True)
        from accelerate import PartialState

        shares = gather_objects(PartialState(), list(counts))
        if not result.is_main:
            continue
        phases = [
            {key: sum(share[i][key] for share in shares) for key in ("new", "replay")}
            | {"micro_batches_per_process": [share[i]["micro_batches"] for share in shares]}
            for i in range(len(shares[0]))
        ]
        payload = {"rows": result.matrix.rows, "phases": phases, "processes": len(shares)}
        (out / f"{name}.json").write_text(json.dumps(payload))
        shutil.copy(result.run_dir / "checkpoint" / "model.safetensors", out / f"{name}.safetensors")


if __name__ == "__main__":
    from retain.engine.collective import end_process_group

    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
    end_process_group()
