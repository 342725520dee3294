"""Runs every registered method that declares DDP on one tiny stream, one after another, in this
process group (:func:`method_scenarios`: a method declaring DDP is in, with no list to edit).

Launched by ``tests/test_distributed.py`` twice: in two gloo processes (``torchrun``, batch B,
``grad_accum`` 1) and in one process (batch B, ``grad_accum`` 2: the same global batch), so that
the two can be compared run by run. Not a test module itself (pytest does not collect it).

    python tests/ddp_equivalence.py OUT GRAD_ACCUM SCENARIO...

For each scenario the main process writes ``OUT/<scenario>.json`` (the matrix, and per phase the
new/replay micro-batches trained, summed over processes), ``OUT/<scenario>.safetensors`` (the
final weights the run checkpointed) and ``OUT/<scenario>.steps.jsonl`` (the step log, one record
per optimizer step: loss and gradient norm, reduced over processes).
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

#: the stream every scenario trains on unless :data:`SETTINGS` names its own: 2 tasks, 24 training
#: examples each, batch 3 per process, so 8 new micro-batches per task (4 per process) and replay
#: buffers of 6 examples (2 batches)
STREAM = {"benchmark": "demo", "demo_tasks": 2, "demo_train_size": 24, "demo_eval_size": 6}
TRAIN = {"epochs": 1, "batch_size": 3, "lr": 3e-3}
#: EWC at the demo config's weight, where a Fisher summed in another order moves the update most
EWC_DEMO = {"name": "ewc", "lam": 1e6, "gamma": 1.0}
#: the settings of a reported measurement: 3 tasks of 48 examples at batch 4 (12 micro-batches a
#: task, 6 per process); "uneven": shares that do not divide, 50 examples (13 micro-batches: a
#: pad on the second process) and 9 evaluation examples at eval batch 4 (shares of 5 and 4
#: examples, 2 batches and 1)
REPORTED = {"stream": {"demo_tasks": 3, "demo_train_size": 48}, "train": {"batch_size": 4}}
UNEVEN = {"stream": {"demo_tasks": 3, "demo_train_size": 50, "demo_eval_size": 9}, "train": {"batch_size": 4},
          "eval": {"batch_size": 4}}
REPLAY = {"ratio": 0.25, "schedule": "interleaved"}
#: what ``benchmarks/equivalence_settings.py`` varies (other seeds, epochs, a learning rate off by
#: one part in 1e7), as JSON ``{"seed": N, "train": {...}}``; the tests leave it unset
VARIED: dict[str, Any] = json.loads(os.environ.get("RETAIN_EQUIVALENCE_VARIED", "{}"))
#: scenario -> method list beyond one per method (:func:`method_scenarios`): compositions, edge
#: cases and reported settings (KIF-M is KIF with a replay buffer)
COMBINATIONS: dict[str, list[Any]] = {
    "replay-interleaved": [{"name": "replay", **REPLAY}],
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
    # the reported settings (SETTINGS below): plain fine-tuning and EWC at lam 1e6
    "reported-seqft": ["seqft"],
    "reported-ewc": [EWC_DEMO],
    "uneven-seqft": ["seqft"],
    "uneven-ewc": [EWC_DEMO],
    # loss terms on gathered adapter matrices, whose gradient each process takes for its own rows
    # (like EWC's penalty under FSDP), with a pad micro-batch in each task's last window
    "uneven-olora": ["olora"],
    "uneven-kif-lora": ["seqlora", "kif"],
}


def method_scenarios() -> dict[str, list[Any]]:
    """One scenario per registered method that declares data parallelism (``multi_gpu``), named
    after it and run with its ``test_params``: a new method is in the suite by declaring DDP, with
    no list to edit here."""
    from retain.methods.registry import available_methods, supports_mode

    return {
        name: [{"name": name, **cls.test_params} if cls.test_params else name]
        for name, cls in sorted(available_methods().items())
        if supports_mode(cls, "multi_gpu")
    }


#: scenario -> method list: one per registered method that declares DDP, then the combinations
SCENARIOS: dict[str, list[Any]] = {**method_scenarios(), **COMBINATIONS}
#: scenario -> the stream / train settings it changes (the rest: STREAM and TRAIN)
SETTINGS: dict[str, dict[str, dict[str, Any]]] = {
    "reported-seqft": REPORTED, "reported-ewc": REPORTED, "uneven-seqft": UNEVEN, "uneven-ewc": UNEVEN,
    "uneven-olora": UNEVEN, "uneven-kif-lora": UNEVEN,
}


def _config(out: Path, name: str, methods: list[Any], grad_accum: int) -> dict[str, Any]:
    settings = SETTINGS.get(name, {})
    return {
        "name": name,
        "output_dir": str(out / "runs"),
        "seed": VARIED.get("seed", 7),
        # LoRA dropout 0: dropout masks are drawn per process, so with dropout two processes match one
        # only in distribution, not weight for weight
        "model": {"name_or_path": "builtin:tiny-llama", "lora": {"dropout": 0.0}},
        "stream": {**STREAM, **settings.get("stream", {})},
        # a step log record per optimizer step: its loss and gradient norm are compared too
        "train": {**TRAIN, **settings.get("train", {}), **VARIED.get("train", {}), "grad_accum": grad_accum,
                  "report_to": ["jsonl"], "logging_steps": 1},
        "eval": {"batch_size": 1, "max_new_tokens": 4, **settings.get("eval", {})},
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
        shutil.copy(result.run_dir / "steps.jsonl", out / f"{name}.steps.jsonl")


if __name__ == "__main__":
    from retain.engine.collective import end_process_group

    main(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
    end_process_group()
