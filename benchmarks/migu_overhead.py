"""MIGU overhead: optimizer-step time of `migu` against `seqft` on the same model and batches.

One engine context on a small saved decoder (random init); each round trains one epoch with
`seqft`, then one with `migu` (masking from the first step: skip_first_task=false), both from the
same initial weights with a fresh AdamW. Rounds alternate so that machine noise hits both alike;
the JSON reports the median step times and their ratio (target: migu within 10% of seqft).
It runs on one thread by default: on a shared machine, multi-threaded kernels stall whenever a
thread is descheduled, while the process CPU time of a single-threaded run still measures the work,
so the CPU-time ratio is reported next to the wall-clock one.

    python benchmarks/migu_overhead.py [--rounds 9] [--hidden 256] [--layers 4] [--statistic l1_mean]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import add_decoder_size_args, median, small_decoder_run, timed, write_result  # noqa: E402

from retain.engine.context import RunContext  # noqa: E402
from retain.engine.hooks import HookDispatcher  # noqa: E402
from retain.engine.loop import new_task_plan, train_phase  # noqa: E402
from retain.engine.optim import build_optimizer  # noqa: E402
from retain.methods.base import Method  # noqa: E402
from retain.methods.migu.method import Migu, MiguParams  # noqa: E402

TARGET = 1.10


def epoch(ctx: RunContext, methods: list[Method], initial: dict[str, torch.Tensor], config: object) -> tuple[float, float, int]:
    """One epoch from the initial weights with a fresh optimizer: (wall s, process CPU s, steps)."""
    ctx.unwrapped_model().load_state_dict(initial)
    ctx.optimizer = ctx.accelerator.prepare_optimizer(
        build_optimizer([p for _, p in ctx.trainable_parameters()], config.train)  # type: ignore[attr-defined]
    )
    ctx.scheduler = None
    for method in methods:
        method.on_phase_start(ctx)
    cpu_start = time.process_time()
    seconds, stats = timed(lambda: train_phase(ctx, HookDispatcher(methods), new_task_plan(ctx), show_progress=False))
    cpu = time.process_time() - cpu_start
    for method in methods:
        method.on_phase_end(ctx)
    ctx.unwrapped_model().zero_grad(set_to_none=True)
    return seconds, cpu, stats["steps"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    add_decoder_size_args(parser)
    parser.add_argument("--out", default="migu_overhead", help="result name under benchmarks/results/")
    parser.add_argument("--statistic", default="l1_mean", choices=["l1_mean", "raw_sum"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: CPU time measures the work even on a busy machine)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        config, ctx, seqft = small_decoder_run(Path(tmp), args, eval_size=8)
        migu = Migu(MiguParams(skip_first_task=False, statistic=args.statistic))
        migu.on_setup(ctx)
        initial = {k: v.clone() for k, v in ctx.unwrapped_model().state_dict().items()}
        seqft_times: list[float] = []
        migu_times: list[float] = []
        seqft_cpu: list[float] = []
        migu_cpu: list[float] = []
        steps = 0
        epoch(ctx, seqft, initial, config)  # warm-up (allocator, thread pools), not counted
        for _ in range(args.rounds):
            seconds, cpu, steps = epoch(ctx, seqft, initial, config)
            seqft_times.append(seconds)
            seqft_cpu.append(cpu)
            seconds, cpu, _ = epoch(ctx, [migu], initial, config)
            migu_times.append(seconds)
            migu_cpu.append(cpu)
        kept = migu.on_log().get("migu_rows_updated")
        layers = len(migu.fractions.get(ctx.phase.name, {}))
        tokens = sum(len(e.input_ids) for e in ctx.phase_train_examples())
        params = sum(p.numel() for p in ctx.unwrapped_model().parameters())

    seqft_step = median(seqft_times) / steps
    migu_step = median(migu_times) / steps
    ratio = migu_step / seqft_step
    min_ratio = min(migu_times) / min(seqft_times)
    cpu_ratio = median(migu_cpu) / median(seqft_cpu)
    path = write_result(args.out, {
        "command": "python benchmarks/migu_overhead.py " + " ".join(sys.argv[1:]),
        "model": {"kind": "causal (LLaMA-style, random init)", "hidden": args.hidden, "layers": args.layers, "parameters": params},
        "train_examples": args.train_size, "train_tokens": tokens, "batch_size": args.batch_size,
        "rounds": args.rounds, "threads": args.threads, "steps_per_epoch": steps, "statistic": args.statistic,
        "masked_layers": layers, "fraction_rows_updated": kept,
        "seqft_epoch_seconds": seqft_times, "migu_epoch_seconds": migu_times,
        "seqft_process_cpu_seconds": seqft_cpu, "migu_process_cpu_seconds": migu_cpu,
        "seqft_median_step_ms": 1000 * seqft_step, "migu_median_step_ms": 1000 * migu_step,
        "overhead_ratio": ratio, "target_ratio": TARGET, "within_target": ratio <= TARGET,
        "ratio_of_fastest_rounds": min_ratio, "ratio_of_median_process_cpu": cpu_ratio,
        "note": "wall-clock medians are the headline; the fastest-round and CPU-time ratios show how much of "
                "a difference is machine noise on a shared CPU",
    })
    print(f"seqft {1000 * seqft_step:.1f} ms/step  migu {1000 * migu_step:.1f} ms/step  ratio {ratio:.3f} "
          f"(target <= {TARGET}; fastest rounds {min_ratio:.3f}, CPU time {cpu_ratio:.3f})  {layers} layers, {kept:.3f} of rows updated  -> {path}")


if __name__ == "__main__":
    main()
