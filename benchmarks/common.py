"""Helpers shared by the benchmark scripts: a small saved decoder, timing, JSON output."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


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
