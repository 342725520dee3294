"""MIGU overhead: optimizer-step time of `migu` against `seqft` on the same model and batches.

One engine context on a small saved decoder (random init); each round trains one epoch with
`seqft` and one with `migu` (masking from the first step: skip_first_task=false), both from the
same initial weights with a fresh AdamW. Within a round the two run back to back, and the order
alternates from round to round (seqft first, then migu first), so slow drifts of the machine's
load hit both alike. Each round gives one migu/seqft ratio; the headline is the median of those
per-round ratios, with their interquartile range (IQR) and min/max as the spread, next to the
ratio of median times (target: migu within 10% of seqft). The load average is recorded.
It runs on one thread by default: on a shared machine, multi-threaded kernels stall whenever a
thread is descheduled, while the process CPU time of a single-threaded run still measures the work,
so the CPU-time ratio is reported next to the wall-clock one.

    python benchmarks/migu_overhead.py [--rounds 20] [--hidden 256] [--layers 4] [--statistic l1_mean]
"""

from __future__ import annotations

import argparse
import os
import statistics
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


def spread(values: list[float]) -> dict[str, float]:
    """Median, quartiles, IQR and range of per-round values."""
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {"median": statistics.median(ordered), "q1": q1, "q3": q3, "iqr": q3 - q1,
            "min": ordered[0], "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
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
        load_start = os.getloadavg()
        for round_index in range(args.rounds):
            order = ("seqft", "migu") if round_index % 2 == 0 else ("migu", "seqft")
            for which in order:
                if which == "seqft":
                    seconds, cpu, steps = epoch(ctx, seqft, initial, config)
                    seqft_times.append(seconds)
                    seqft_cpu.append(cpu)
                else:
                    seconds, cpu, _ = epoch(ctx, [migu], initial, config)
                    migu_times.append(seconds)
                    migu_cpu.append(cpu)
        load_end = os.getloadavg()
        kept = migu.on_log().get("migu_rows_updated")
        layers = len(migu.fractions.get(ctx.phase.name, {}))
        tokens = sum(len(e.input_ids) for e in ctx.phase_train_examples())
        params = sum(p.numel() for p in ctx.unwrapped_model().parameters())

    seqft_step = median(seqft_times) / steps
    migu_step = median(migu_times) / steps
    ratio = migu_step / seqft_step
    min_ratio = min(migu_times) / min(seqft_times)
    cpu_ratio = median(migu_cpu) / median(seqft_cpu)
    round_ratios = [m / s for m, s in zip(migu_times, seqft_times)]
    round_cpu_ratios = [m / s for m, s in zip(migu_cpu, seqft_cpu)]
    wall, cpu_spread = spread(round_ratios), spread(round_cpu_ratios)
    path = write_result(args.out, {
        "command": "python benchmarks/migu_overhead.py " + " ".join(sys.argv[1:]),
        "model": {"kind": "causal (LLaMA-style, random init)", "hidden": args.hidden, "layers": args.layers, "parameters": params},
        "train_examples": args.train_size, "train_tokens": tokens, "batch_size": args.batch_size,
        "rounds": args.rounds, "threads": args.threads, "steps_per_epoch": steps, "statistic": args.statistic,
        "masked_layers": layers, "fraction_rows_updated": kept,
        "seqft_epoch_seconds": seqft_times, "migu_epoch_seconds": migu_times,
        "seqft_process_cpu_seconds": seqft_cpu, "migu_process_cpu_seconds": migu_cpu,
        "seqft_median_step_ms": 1000 * seqft_step, "migu_median_step_ms": 1000 * migu_step,
        "per_round_ratios": round_ratios, "per_round_process_cpu_ratios": round_cpu_ratios,
        "ratio_per_round": wall, "ratio_per_round_process_cpu": cpu_spread,
        "headline_ratio": wall["median"], "target_ratio": TARGET, "within_target": wall["median"] <= TARGET,
        "overhead_ratio": ratio,
        "load_average_1_5_15_min": {"start": load_start, "end": load_end},
        "ratio_of_fastest_rounds": min_ratio, "ratio_of_median_process_cpu": cpu_ratio,
        "note": "headline: the median of per-round migu/seqft wall-clock ratios (rounds interleaved, order "
                "alternating), spread as IQR and range; overhead_ratio is the ratio of median epoch times; the "
                "CPU-time ratios show how much of a difference is machine noise on a shared CPU",
    })
    print(f"seqft {1000 * seqft_step:.1f} ms/step  migu {1000 * migu_step:.1f} ms/step  per-round ratio median "
          f"{wall['median']:.3f} IQR {wall['q1']:.3f}-{wall['q3']:.3f} (range {wall['min']:.3f}-{wall['max']:.3f}); "
          f"CPU-time ratio median {cpu_spread['median']:.3f} IQR {cpu_spread['q1']:.3f}-{cpu_spread['q3']:.3f} "
          f"(target <= {TARGET}); load {load_start[0]:.1f}->{load_end[0]:.1f}; {layers} layers, {kept:.3f} of rows updated  -> {path}")


if __name__ == "__main__":
    main()
