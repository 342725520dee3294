"""Runs a small stream whose evaluation sets do not divide over the processes, in this process group.

Launched by ``tests/test_sharded.py`` with ``torchrun`` in two gloo processes under FSDP (batch 4,
``grad_accum`` 1) and in one unsharded process (batch 4, ``grad_accum`` 2: the same global batch).
9 evaluation examples per task at ``eval.batch_size`` 4: process 0 scores 5 of them in 2 batches,
process 1 scores 4 in one, the split that hung under FSDP in generation. Not a test module.

    python tests/uneven_eval.py MODE OUT VARIANT...

MODE: ``none`` or a ``train.sharding`` mode. VARIANT:

* ``gathered``: the engine's own path (rows scored inside ``full_parameters``), greedy generation;
* ``sharded``: each row scored on the sharded parameters (every forward all-gathers), so the
  process with a batch fewer must pad;
* ``sharded-rank``: the same with rank classification (``eval.scoring: rank``).

In one unsharded process the ``sharded`` variants are the ``gathered`` run of their config. The
main process writes ``OUT/<variant>.json``: the matrix and every row's predictions.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

VARIANTS = ("gathered", "sharded", "sharded-rank")


def _config(out: Path, variant: str, mode: str, grad_accum: int) -> dict[str, Any]:
    return {
        "name": variant,
        "output_dir": str(out / "runs"),
        "seed": 42,
        "model": {"name_or_path": "builtin:tiny-llama"},
        # 2 epochs of 48 examples: the tasks are learned a little, so the matrix is not all zeros
        "stream": {"benchmark": "demo", "demo_tasks": 2, "demo_train_size": 48, "demo_eval_size": 9},
        "train": {"epochs": 2, "batch_size": 4, "grad_accum": grad_accum, "lr": 3e-3, "max_grad_norm": 1.0,
                  "sharding": mode},
        "eval": {"batch_size": 4, "before_training": True, "save_predictions": True,
                 "scoring": "rank" if variant.endswith("-rank") else "generate"},
        "methods": ["seqft"],
    }


def _score_rows_on_shards() -> None:
    """Score every row on the sharded parameters: leave the gathered state the runner enters."""
    import retain.engine.runner as runner
    from retain.engine.sharding import sharded_steps

    evaluate_tasks = runner.evaluate_tasks

    def on_shards(ctx: Any, *args: Any, **kwargs: Any) -> Any:
        with sharded_steps(ctx.unwrapped_model()):
            return evaluate_tasks(ctx, *args, **kwargs)

    runner.evaluate_tasks = on_shards


def main(mode: str, out: Path, variants: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    import retain
    import retain.engine.runner as runner

    grad_accum = 1 if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 2
    runner.ContinualRunner._write_report = lambda self, ctx, methods: None  # type: ignore[method-assign]
    unpatched = runner.evaluate_tasks
    for variant in variants:
        if variant not in VARIANTS:
            raise SystemExit(f"variant {variant!r} is not one of {', '.join(VARIANTS)}")
        runner.evaluate_tasks = unpatched
        if variant.startswith("sharded"):
            _score_rows_on_shards()
        result = retain.run(_config(out, variant, mode, grad_accum), quiet=True)
        if not result.is_main:
            continue
        predictions = {
            path.relative_to(result.run_dir).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted(result.run_dir.rglob("*"))
            if path.is_file() and "predictions" in path.as_posix()
        }
        payload = {"rows": result.matrix.rows, "predictions": predictions}
        (out / f"{variant}.json").write_text(json.dumps(payload))


if __name__ == "__main__":
    from retain.engine.collective import end_process_group

    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
    end_process_group()
