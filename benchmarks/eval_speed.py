"""Evaluation speed: generation and rank scoring before/after, and evaluation seconds per run.

Three measurements in one process, on a small saved LLaMA-style decoder (random init) and a
generated 15-task stream with the task names of long-sequence order 4 (dbpedia with its 14 labels,
prompts of mixed lengths), so that it runs without data:

1. generation examples/s: batches in data order (before) vs length-sorted batches (after);
2. rank scoring examples/s on dbpedia's 14 labels: the prompt run once per label (before) vs the
   prompt encoded once and its KV cache shared by the labels (after);
3. evaluation seconds per run of `seqft` over the 15 tasks: `eval.cells: all` with the earlier
   scoring paths (before), `all` with the new paths, and `needed` (the default) with the new paths.

The earlier paths stay callable (``sort_by_length=False``, ``share_prompt=False``), so before and
after are measured alike in one run; speed rounds alternate before/after and report medians.
``--data-root`` uses the real benchmark folder (long-sequence order 4, capped) instead.

    python benchmarks/eval_speed.py [--eval-size 16] [--speed-examples 128] [--rounds 3] [--hidden 128]
                                    [--data-root ../shared/data/cl_benchmark]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ORDER, median, save_small_decoder, timed, write_generated_stream, write_result  # noqa: E402

import retain  # noqa: E402
from retain.config import make_config  # noqa: E402
from retain.data.benchmarks import build_stream  # noqa: E402
from retain.data.collate import Encoder  # noqa: E402
from retain.data.tokenizer import build_word_tokenizer  # noqa: E402
from retain.evaluation import scoring  # noqa: E402
from retain.evaluation.rank import rank_answers  # noqa: E402
from retain.models.loading import load_model, stream_texts  # noqa: E402

def stream_section(data_root: Path, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "benchmark": "long-sequence", "order": ORDER, "data_root": str(data_root),
        "max_train_per_task": args.train_size, "max_eval_per_task": args.eval_size,
        "max_source_length": args.max_source_length, "max_target_length": 8,
    }


@contextlib.contextmanager
def earlier_scoring_paths() -> Iterator[None]:
    """Score with the paths of before the change: data-order batches, the prompt run per label."""
    generate, rank = scoring.generate_answers, scoring.rank_answers
    scoring.generate_answers = functools.partial(generate, sort_by_length=False)  # type: ignore[assignment]
    scoring.rank_answers = functools.partial(rank, share_prompt=False)  # type: ignore[assignment]
    try:
        yield
    finally:
        scoring.generate_answers, scoring.rank_answers = generate, rank  # type: ignore[assignment]


def scoring_speed(model_dir: Path, config: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Examples/s of generation (unsorted vs sorted) and rank scoring on dbpedia (per label vs shared),
    on ``--speed-examples`` dev examples (several batches, so that sorting can change them)."""
    config.stream.max_eval_per_task = args.speed_examples
    stream = build_stream(config.stream, 0)
    loaded = load_model(config.model, stream, 0)
    model = loaded.model.eval()
    encoder = Encoder(loaded.tokenizer, loaded.kind, [], config.stream.max_source_length, config.stream.max_target_length)
    device = torch.device("cpu")
    by_name = {t.name: (i, t) for i, t in enumerate(stream.tasks)}
    index, dbpedia = by_name["dbpedia"]
    items = encoder.encode_task(dbpedia, index, "eval")
    budget = max(len(encoder.target_tokens(it)) for it in items) + 2
    batch = config.eval.batch_size
    timings: dict[str, list[float]] = {"generate_before": [], "generate_after": [], "rank_before": [], "rank_after": []}
    cpu_seconds: dict[str, list[float]] = {k: [] for k in timings}
    answers: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for key, fn in (
            ("generate_before", lambda: scoring.generate_answers(model, encoder, items, batch, budget, device, sort_by_length=False)),
            ("generate_after", lambda: scoring.generate_answers(model, encoder, items, batch, budget, device)),
            ("rank_before", lambda: rank_answers(model, encoder, items, dbpedia.labels, batch, device, share_prompt=False)),
            ("rank_after", lambda: rank_answers(model, encoder, items, dbpedia.labels, batch, device)),
        ):
            cpu_start = time.process_time()
            seconds, answers[key] = timed(fn)
            timings[key].append(seconds)
            cpu_seconds[key].append(time.process_time() - cpu_start)
    rate = {k: len(items) / median(v) for k, v in timings.items()}
    return {
        "task": "dbpedia", "labels": len(dbpedia.labels), "examples": len(items), "eval_batch_size": batch,
        "generation_budget_tokens": budget,
        "seconds": timings, "process_cpu_seconds": cpu_seconds,
        "rank_speedup_cpu_time": median(cpu_seconds["rank_before"]) / median(cpu_seconds["rank_after"]),
        "generate_speedup_cpu_time": median(cpu_seconds["generate_before"]) / median(cpu_seconds["generate_after"]),
        "generate_examples_per_s": {"before": rate["generate_before"], "after": rate["generate_after"]},
        "generate_speedup": rate["generate_after"] / rate["generate_before"],
        "generate_same_answers": answers["generate_before"] == answers["generate_after"],
        "rank_examples_per_s": {"before": rate["rank_before"], "after": rate["rank_after"]},
        "rank_speedup": rate["rank_after"] / rate["rank_before"],
        "rank_same_answers": answers["rank_before"] == answers["rank_after"],
    }


def run_eval_seconds(config: dict[str, Any], cells: str, earlier: bool) -> dict[str, Any]:
    """One `seqft` run over the stream; the seconds spent in evaluation rows (and in all)."""
    from retain.engine import runner

    spent: list[float] = []
    spent_cpu: list[float] = []
    evaluate = runner.evaluate_tasks

    def timed_evaluate(*a: Any, **k: Any) -> Any:
        start, cpu_start = time.perf_counter(), time.process_time()
        try:
            return evaluate(*a, **k)
        finally:
            spent.append(time.perf_counter() - start)
            spent_cpu.append(time.process_time() - cpu_start)

    config = {**config, "name": f"{cells}-{'before' if earlier else 'after'}", "eval": {**config["eval"], "cells": cells}}
    runner.evaluate_tasks = timed_evaluate  # type: ignore[assignment]
    try:
        with earlier_scoring_paths() if earlier else contextlib.nullcontext():
            seconds, result = timed(lambda: retain.run(config, quiet=True, overwrite=True))
    finally:
        runner.evaluate_tasks = evaluate  # type: ignore[assignment]
    cells_scored = sum(v is not None for row in result.matrix.rows for v in row)
    metrics = {k: v["value"] for k, v in result.metrics.items() if isinstance(v, dict)}
    return {"cells": cells, "scoring_paths": "before" if earlier else "after", "eval_seconds": sum(spent),
            "eval_process_cpu_seconds": sum(spent_cpu),
            "run_seconds": seconds, "cells_scored": cells_scored, "metrics": metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eval-size", type=int, default=16, help="evaluation examples per task")
    parser.add_argument("--train-size", type=int, default=16, help="training examples per task")
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds of the scoring speeds")
    parser.add_argument("--speed-examples", type=int, default=128, help="dbpedia dev examples timed by the scoring speeds")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32, help="eval.batch_size")
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--scoring", default="generate", choices=["generate", "rank"], help="eval.scoring of the runs")
    parser.add_argument("--data-root", default=None, help="the real benchmark folder (long-sequence order 4, capped)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared machine multi-threaded kernels stall whenever a thread is "
                             "descheduled; 0: torch's default)")
    parser.add_argument("--out", default="eval_speed", help="result name under benchmarks/results/")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data_root = Path(args.data_root) if args.data_root else write_generated_stream(
            folder / "data", args.train_size, args.eval_size, eval_sizes={"dbpedia": max(args.eval_size, args.speed_examples)}
        )
        stream = stream_section(data_root, args)
        tokenizer = build_word_tokenizer(stream_texts(build_stream(make_config({"stream": stream}).stream, 0)))
        model_dir = save_small_decoder(folder / "decoder", tokenizer, args.hidden, args.layers)
        config = {
            "output_dir": str(folder / "runs"), "seed": 0,
            "model": {"name_or_path": str(model_dir)}, "stream": stream,
            "train": {"epochs": 1, "batch_size": 8, "lr": 1e-3},
            "eval": {"batch_size": args.batch_size, "scoring": args.scoring, "save_predictions": False},
            "methods": ["seqft"],
        }
        speed = scoring_speed(model_dir, make_config(config), args)
        runs = [run_eval_seconds(config, "all", True), run_eval_seconds(config, "all", False), run_eval_seconds(config, "needed", False)]
    before, all_after, needed = runs
    shared_metrics = all(needed["metrics"][k] == all_after["metrics"][k] for k in needed["metrics"])
    payload = {
        "command": "python benchmarks/eval_speed.py " + " ".join(sys.argv[1:]),
        "load_average_1_5_15_min_at_start": load, "load_average_at_end": os.getloadavg(),
        "model": {"kind": "causal (LLaMA-style, random init)", "hidden": args.hidden, "layers": args.layers},
        "stream": {"tasks": 15, "source": args.data_root or "generated (long-sequence order 4 task names)",
                   "train_per_task": args.train_size, "eval_per_task": args.eval_size, "scoring": args.scoring},
        "scoring_speed": speed,
        "runs": runs,
        "eval_seconds_per_run": {"all_before": before["eval_seconds"], "all_after": all_after["eval_seconds"],
                                 "needed_after": needed["eval_seconds"]},
        "needed_vs_before_reduction": 1 - needed["eval_seconds"] / before["eval_seconds"],
        "needed_vs_all_reduction": 1 - needed["eval_seconds"] / all_after["eval_seconds"],
        "needed_vs_before_reduction_cpu_time": 1 - needed["eval_process_cpu_seconds"] / before["eval_process_cpu_seconds"],
        "needed_vs_all_reduction_cpu_time": 1 - needed["eval_process_cpu_seconds"] / all_after["eval_process_cpu_seconds"],
        "cells_reduction": 1 - needed["cells_scored"] / all_after["cells_scored"],
        "needed_metrics_equal_all": shared_metrics,
        "targets": {"eval_time_reduction": 0.40, "rank_speedup": 2.0},
    }
    path = write_result(args.out, payload)
    print(f"generate {speed['generate_examples_per_s']['before']:.1f} -> {speed['generate_examples_per_s']['after']:.1f} ex/s "
          f"({speed['generate_speedup']:.2f}x); rank on {speed['labels']} labels {speed['rank_examples_per_s']['before']:.1f} -> "
          f"{speed['rank_examples_per_s']['after']:.1f} ex/s ({speed['rank_speedup']:.2f}x)")
    print(f"eval s/run: all+before {before['eval_seconds']:.1f}, all+after {all_after['eval_seconds']:.1f}, "
          f"needed+after {needed['eval_seconds']:.1f} ({100 * payload['needed_vs_before_reduction']:.0f}% less than before, "
          f"{100 * payload['needed_vs_all_reduction']:.0f}% less than all; cells {100 * payload['cells_reduction']:.0f}% fewer); "
          f"metrics equal: {shared_metrics}  -> {path}")


if __name__ == "__main__":
    main()
