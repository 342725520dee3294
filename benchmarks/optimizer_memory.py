"""Optimizer memory per task: what the accelerator still holds after each task of a run.

A ``seqft`` run (a new AdamW per task, the default) over ``--tasks`` demo tasks on a freshly saved
small decoder; after every task (at its checkpoint) the script records the optimizers the
accelerator keeps, the bytes of their state (Adam moments) and the process's resident memory.
Before the engine released finished optimizers, every task's AdamW stayed referenced by
Accelerate, so the state bytes grew by one AdamW per task; now they stay at one.

Run it against any checkout (only the engine's ``ContinualRunner._checkpoint`` is patched, so the
same script measures an older engine too):

    python benchmarks/optimizer_memory.py [--tasks 4] [--hidden 256] [--layers 4] [--out NAME]
    PYTHONPATH=/path/to/old/src python benchmarks/optimizer_memory.py --out optimizer_memory_before
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save_small_decoder, write_result  # noqa: E402


def state_bytes(optimizers: list[Any]) -> int:
    """Bytes of the tensors in the optimizers' state (the AdamW moments)."""
    total = 0
    for optimizer in optimizers:
        inner = getattr(optimizer, "optimizer", optimizer)
        for state in inner.state.values():
            total += sum(v.numel() * v.element_size() for v in state.values() if isinstance(v, torch.Tensor))
    return total


def resident_bytes() -> int:
    """The process's resident set size (Linux ``/proc/self/statm``), after a garbage collection."""
    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=64)
    parser.add_argument("--out", default="optimizer_memory")
    args = parser.parse_args()

    import retain
    from retain.config import make_config
    from retain.data.demo import build_demo_stream
    from retain.data.tokenizer import build_word_tokenizer
    from retain.engine.runner import ContinualRunner
    from retain.models.loading import stream_texts

    per_task: list[dict[str, Any]] = []
    checkpoint = ContinualRunner._checkpoint

    def measuring(self: Any, ctx: Any, methods: Any, matrix: Any, general: Any, completed: int) -> None:
        checkpoint(self, ctx, methods, matrix, general, completed)
        held = list(ctx.accelerator._optimizers)
        per_task.append({
            "tasks_done": completed, "optimizers_held": len(held), "optimizer_state_bytes": state_bytes(held),
            "resident_bytes": resident_bytes(),
        })

    ContinualRunner._checkpoint = measuring  # type: ignore[method-assign]
    stream = {"benchmark": "demo", "demo_tasks": args.tasks, "demo_train_size": args.train_size, "demo_eval_size": 4}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        tokenizer = build_word_tokenizer(stream_texts(build_demo_stream(make_config({"stream": stream}).stream, 0)))
        model_dir = save_small_decoder(folder / "decoder", tokenizer, args.hidden, args.layers)
        config = {
            "name": "memory", "output_dir": str(folder / "runs"), "seed": 0,
            "model": {"name_or_path": str(model_dir)}, "stream": stream,
            "train": {"epochs": 1, "batch_size": 16, "lr": 1e-4},
            "eval": {"batch_size": 16, "before_training": False, "max_new_tokens": 2},
            "methods": ["seqft"],
        }
        retain.run(config, quiet=True)
        parameters = sum(p.numel() for p in torch.nn.Module.parameters(_loaded(model_dir)))
    per_task = [row for row in per_task if row["tasks_done"] > 0]
    growth = [b["optimizer_state_bytes"] - a["optimizer_state_bytes"] for a, b in zip(per_task, per_task[1:])]
    path = write_result(args.out, {
        "command": " ".join(["python", *sys.argv]),
        "engine": str(Path(retain.__file__).resolve().parent),
        "model": {"hidden": args.hidden, "layers": args.layers, "parameters": parameters},
        "adamw_state_bytes_one_task": 2 * 4 * parameters,
        "per_task": per_task,
        "state_growth_per_task_bytes": growth,
    })
    print(path.read_text())


def _loaded(model_dir: Path) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir)


if __name__ == "__main__":
    main()
