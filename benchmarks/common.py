"""Helpers shared by the benchmark scripts: a small saved decoder, timing, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch

RESULTS = Path(__file__).resolve().parent / "results"
# Where the real-data benchmarks look for the standard CL benchmark unless --data-root says
# otherwise: the shared folder beside the repository, which is never committed into it.
CL_DATA_DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "cl_benchmark"


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def save_small_decoder(folder: Path, tokenizer: Any, hidden: int = 256, layers: int = 4, heads: int = 8) -> Path:
    """Save a randomly initialised LLaMA-style decoder and its tokenizer with save_pretrained."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 4 // 1,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "machine": machine(), **payload}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
    return path


def add_decoder_size_args(parser: argparse.ArgumentParser) -> None:
    """The options of the small decoder and stream that the step-cost benchmarks time."""
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--train-size", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)


def small_decoder_run(folder: Path, args: argparse.Namespace, eval_size: int) -> tuple[Any, Any, list[Any]]:
    """The config, run context (phase 0) and methods of a `seqft` run on a freshly saved decoder.

    One demo task of ``args.train_size`` examples; the decoder's size comes from
    :func:`add_decoder_size_args`. The step-cost benchmarks time epochs on this context directly.
    """
    from retain.config import make_config
    from retain.data.demo import build_demo_stream
    from retain.data.tokenizer import build_word_tokenizer
    from retain.engine.runner import ContinualRunner
    from retain.models.loading import stream_texts

    stream = {"benchmark": "demo", "demo_tasks": 1, "demo_train_size": args.train_size, "demo_eval_size": eval_size}
    tokenizer = build_word_tokenizer(stream_texts(build_demo_stream(make_config({"stream": stream}).stream, 0)))
    model_dir = save_small_decoder(folder / "decoder", tokenizer, args.hidden, args.layers)
    config = make_config({
        "name": "bench", "output_dir": str(folder / "runs"), "seed": 0,
        "model": {"name_or_path": str(model_dir)},
        "stream": stream,
        "train": {"epochs": 1, "batch_size": args.batch_size, "lr": 1e-4, "max_grad_norm": 1.0},
        "eval": {"batch_size": 64},
        "methods": ["seqft"],
    })
    ctx, methods, _ = ContinualRunner(config, quiet=True)._build()
    ctx.state.phase_index = 0
    return config, ctx, methods


#: The long-sequence order whose task names the generated stream uses.
ORDER = 4
DBPEDIA_LABELS = [
    "Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder", "MeanOfTransportation",
    "Building", "NaturalPlace", "Village", "Animal", "Plant", "Album", "Film", "WrittenWork",
]
TWO = ["negative", "positive"]
LABELS = {"dbpedia": DBPEDIA_LABELS, "agnews": ["World", "Sports", "Business", "Science or Technology"],
          "yahoo": ["Society", "Science", "Health", "Education", "Computers", "Sports", "Business",
                    "Entertainment", "Relationships", "Politics"],
          "mnli": ["entailment", "neutral", "contradiction"], "cb": ["entailment", "neutral", "contradiction"],
          "copa": ["A", "B"], "qqp": ["True", "False"], "boolqa": ["True", "False"], "rte": ["entailment", "not_entailment"],
          "wic": ["True", "False"], "multirc": ["True", "False"], "yelp": TWO, "amazon": TWO, "imdb": TWO, "sst-2": TWO}
WORDS = ("the a river town film album company player school plant animal building music river city old new "
         "small large famous local first last great red blue green team song book game market").split()


def write_generated_stream(
    root: Path, train_size: int, eval_size: int, words: tuple[int, int] = (8, 60), eval_sizes: Optional[dict[str, int]] = None
) -> Path:
    """Alpaca records for the 15 tasks of long-sequence order 4 (their label sets, dbpedia's 14
    labels included) under ``root/{train,dev}``; prompts of ``words`` random words, so that the
    benchmarks run without data. ``eval_sizes``: per-task dev sizes other than ``eval_size``."""
    from retain.data.benchmarks import BENCHMARK_ORDERS

    rng = random.Random(0)
    for split, default_size in (("train", train_size), ("dev", eval_size)):
        (root / split).mkdir(parents=True, exist_ok=True)
        for task in BENCHMARK_ORDERS["long-sequence"][ORDER]:
            labels = LABELS[task]
            size = (eval_sizes or {}).get(task, default_size) if split == "dev" else default_size
            records = [
                {
                    "id": f"{task}_{i}",
                    "instruction": f"What is the label of this {task} text? Option: {', '.join(labels)}\n",
                    "input": " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words))) + "\nAnswer:",
                    "output": labels[i % len(labels)],
                }
                for i in range(size)
            ]
            (root / split / f"{task}.json").write_text(json.dumps(records))
    return root
