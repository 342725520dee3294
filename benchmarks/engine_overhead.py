"""Engine overhead: one epoch of `seqft` through the engine against a bare PyTorch loop.

Both loops train the same saved decoder (same initial weights, data, batch size, AdamW, clipping)
in the same process, alternating, several rounds; the JSON reports the median epoch times and
their ratio (target: engine within 5% of the bare loop), plus examples/s of batched greedy
generation for evaluation.

    python benchmarks/engine_overhead.py [--rounds 3] [--hidden 256] [--layers 4]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_decoder_size_args, median, small_decoder_run, timed, write_result  # noqa: E402

from retain.engine.evaluate import evaluate_tasks  # noqa: E402
from retain.engine.hooks import HookDispatcher  # noqa: E402
from retain.engine.loop import new_task_plan, train_phase  # noqa: E402
from retain.engine.optim import build_optimizer  # noqa: E402


def bare_epoch(model: torch.nn.Module, collate: Any, chunks: list[list[Any]], lr: float, clip: float) -> float:
    """A plain loop: collate (as a DataLoader would), forward, backward, clip, AdamW step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    last = 0.0
    for chunk in chunks:
        loss = model(**collate(chunk).inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        last = loss.item()
    return last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    add_decoder_size_args(parser)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config, ctx, methods = small_decoder_run(Path(tmp), args, eval_size=128)
        items = ctx.phase_train_examples()
        order = list(range(len(items)))
        random.Random(0).shuffle(order)
        chunks = [[items[i] for i in order[s : s + args.batch_size]] for s in range(0, len(order), args.batch_size)]
        initial = {k: v.clone() for k, v in ctx.unwrapped_model().state_dict().items()}
        engine_times, bare_times = [], []
        for _ in range(args.rounds):
            ctx.unwrapped_model().load_state_dict(initial)
            ctx.optimizer = ctx.accelerator.prepare_optimizer(
                build_optimizer([p for _, p in ctx.trainable_parameters()], config.train)
            )
            ctx.scheduler = None
            seconds, _ = timed(lambda: train_phase(ctx, HookDispatcher(methods), new_task_plan(ctx), show_progress=False))
            engine_times.append(seconds)
            ctx.unwrapped_model().load_state_dict(initial)
            seconds, _ = timed(lambda: bare_epoch(ctx.unwrapped_model(), ctx.encoder.collate, chunks, 1e-4, 1.0))
            bare_times.append(seconds)
        eval_seconds, row = timed(lambda: evaluate_tasks(ctx, ctx.stream.tasks))
        params = sum(p.numel() for p in ctx.unwrapped_model().parameters())

    engine, bare = median(engine_times), median(bare_times)
    path = write_result("engine_overhead", {
        "command": "python benchmarks/engine_overhead.py " + " ".join(sys.argv[1:]),
        "model": {"kind": "causal (LLaMA-style, random init)", "hidden": args.hidden, "layers": args.layers, "parameters": params},
        "train_examples": args.train_size, "batch_size": args.batch_size, "rounds": args.rounds,
        "engine_epoch_seconds": engine_times, "bare_epoch_seconds": bare_times,
        "engine_median_s": engine, "bare_median_s": bare,
        "overhead_ratio": engine / bare, "target_ratio": 1.05, "within_target": engine / bare <= 1.05,
        "generation_eval": {"examples": 128, "seconds": eval_seconds, "examples_per_second": row.examples_per_second},
    })
    print(f"engine {engine:.3f}s  bare {bare:.3f}s  ratio {engine / bare:.3f}  "
          f"eval {row.examples_per_second:.1f} examples/s  -> {path}")


if __name__ == "__main__":
    main()
