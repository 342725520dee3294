"""GPU throughput: tokens/s and model FLOPs utilisation (MFU) of `seqft` through the engine and of a
bare PyTorch loop on a ~1B-parameter LLaMA-style decoder, plus generation examples/s.

The decoder is built from a config (random init, no download; TinyLlama-like shape: hidden 2048,
22 layers, 32 heads with 4 key/value heads, MLP 5632, vocabulary 32000: 1.1B parameters), saved
in bf16 and loaded by the engine like any checkpoint. Training is bf16 weights with AdamW on
sequences of 512 tokens (prompts of random words truncated to fit); the loss covers the answer
tokens, as in any instruction run, and the forward/backward FLOPs are those of every token.

MFU = achieved model FLOPs / the GPU's dense bf16 peak. Model FLOPs per token of a training step
are 6 x parameters (matmuls, forward + backward) + 12 x layers x hidden x sequence (attention
scores and values); the peak comes from the device name (table below) or ``--peak-tflops``.
Engine and bare loop alternate (``--rounds``) on the same weights, batches and optimizer settings;
medians are reported. Sized to finish in under 5 minutes on an H100/H200-class GPU.

``--small`` runs tiny sizes in fp32 on the CPU, so the script keeps working without a GPU (a test
runs it that way); its MFU is against ``--peak-tflops`` (default 1 TFLOP/s on the CPU).

    python benchmarks/gpu_throughput.py [--steps 20] [--batch-size 8] [--seq-len 512] [--peak-tflops 989]
    python benchmarks/gpu_throughput.py --small
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine, median, write_result  # noqa: E402

#: Dense bf16 peak TFLOP/s (no sparsity) by a substring of torch.cuda.get_device_name(); first match wins.
BF16_PEAK_TFLOPS = (
    ("H200", 989.0), ("H100 PCIe", 756.0), ("H100", 989.0), ("GH200", 989.0), ("H800", 989.0),
    ("B200", 2250.0), ("A100", 312.0), ("A800", 312.0), ("L40S", 362.0), ("L40", 181.0), ("L4", 121.0),
    ("A10G", 70.0), ("A10", 125.0), ("RTX 4090", 165.0), ("RTX 3090", 71.0), ("V100", 125.0),
)

FULL = {"hidden": 2048, "layers": 22, "heads": 32, "kv_heads": 4, "intermediate": 5632, "vocab": 32000}
SMALL = {"hidden": 64, "layers": 2, "heads": 4, "kv_heads": 2, "intermediate": 128, "vocab": 2000}


def peak_tflops(device_name: Optional[str], override: Optional[float]) -> tuple[Optional[float], str]:
    """The bf16 peak used for MFU and where it came from."""
    if override is not None:
        return override, "--peak-tflops"
    if device_name:
        for key, value in BF16_PEAK_TFLOPS:
            if key.lower() in device_name.lower():
                return value, f"table ({key})"
    return None, "unknown device: pass --peak-tflops"


def training_flops_per_token(parameters: int, layers: int, hidden: int, seq_len: int) -> float:
    """6N for the matmuls of forward + backward, plus attention's 12 x layers x hidden x sequence."""
    return 6.0 * parameters + 12.0 * layers * hidden * seq_len


def write_stream(root: Path, examples: int, words: int) -> Path:
    """One alpaca task (under the registry's name dbpedia) of ``examples`` prompts of ``words`` words."""
    rng = random.Random(0)
    vocabulary = [f"w{i}" for i in range(1500)]
    for split in ("train", "dev"):
        (root / split).mkdir(parents=True, exist_ok=True)
        for task in ("dbpedia", "amazon", "yahoo", "agnews"):
            records = [
                {"instruction": "Label the text.\n", "input": " ".join(rng.choice(vocabulary) for _ in range(words)),
                 "output": ["yes", "no"][i % 2]}
                for i in range(examples if task == "dbpedia" else 2)
            ]
            (root / split / f"{task}.json").write_text(json.dumps(records))
    return root


def build_decoder(folder: Path, tokenizer: Any, shape: dict[str, int], dtype: torch.dtype, device: torch.device) -> tuple[Path, int]:
    """Save a randomly initialised LLaMA-style decoder of ``shape`` (built on ``device``: fast init)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=max(shape["vocab"], len(tokenizer)), hidden_size=shape["hidden"],
        intermediate_size=shape["intermediate"], num_hidden_layers=shape["layers"],
        num_attention_heads=shape["heads"], num_key_value_heads=shape["kv_heads"],
        max_position_embeddings=2048, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    with device:
        model = LlamaForCausalLM(config).to(dtype)
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    return folder, parameters


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def engine_steps(ctx: Any, methods: list[Any], steps: int) -> float:
    """Seconds for one epoch of `seqft` (``steps`` micro-batches) through the engine's loop (fresh AdamW)."""
    from retain.engine.hooks import HookDispatcher
    from retain.engine.loop import new_task_plan, train_phase
    from retain.engine.optim import build_optimizer

    ctx.optimizer = ctx.accelerator.prepare_optimizer(
        build_optimizer([p for _, p in ctx.trainable_parameters()], ctx.config.train)
    )
    ctx.scheduler = None
    ctx.accelerator.step = 0
    synchronize(ctx.device)
    start = time.perf_counter()
    train_phase(ctx, HookDispatcher(methods), new_task_plan(ctx), show_progress=False)
    synchronize(ctx.device)
    return time.perf_counter() - start


def bare_steps(model: torch.nn.Module, batches: list[dict[str, torch.Tensor]], lr: float, clip: float, device: torch.device) -> float:
    """Seconds for the same steps in a plain loop: forward, backward, clip, AdamW step."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    synchronize(device)
    start = time.perf_counter()
    for inputs in batches:
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    del optimizer
    return time.perf_counter() - start


def main(argv: Optional[list[str]] = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", action="store_true", help="tiny sizes, fp32, CPU: keeps the script working without a GPU")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps per timed round (default 20; --small 3)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating engine/bare rounds (default 3; --small 1)")
    parser.add_argument("--batch-size", type=int, default=None, help="sequences per step (default 8; --small 2)")
    parser.add_argument("--seq-len", type=int, default=None, help="tokens per sequence (default 512; --small 32)")
    parser.add_argument("--gen-examples", type=int, default=None, help="prompts generated (default 64; --small 4)")
    parser.add_argument("--gen-tokens", type=int, default=None, help="new tokens per generated answer (default 32; --small 4)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 peak for MFU (default: from the device name)")
    parser.add_argument("--json", default=None, help="write the result here instead of benchmarks/results/<--out>.json")
    parser.add_argument("--out", default="gpu_throughput", help="result name under benchmarks/results/")
    args = parser.parse_args(argv)
    small = args.small
    steps = args.steps or (3 if small else 20)
    rounds = args.rounds or (1 if small else 3)
    batch = args.batch_size or (2 if small else 8)
    seq_len = args.seq_len or (32 if small else 512)
    gen_examples = args.gen_examples or (4 if small else 64)
    gen_tokens = args.gen_tokens or (4 if small else 32)
    if small:
        torch.set_num_threads(1)  # tiny kernels: threads only add stalls on a shared CPU
    device = torch.device("cpu") if small or not torch.cuda.is_available() else torch.device("cuda")
    dtype = torch.float32 if small else torch.bfloat16
    shape = SMALL if small else FULL
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    peak, peak_source = peak_tflops(device_name, args.peak_tflops if args.peak_tflops is not None else (1.0 if device.type == "cpu" else None))
    started = time.perf_counter()

    from retain.config import make_config
    from retain.data.benchmarks import build_stream
    from retain.data.tokenizer import build_word_tokenizer
    from retain.engine.runner import ContinualRunner
    from retain.evaluation.scoring import generate_answers
    from retain.models.loading import stream_texts

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        examples = batch * steps
        stream = {"benchmark": "standard-cl", "order": 1, "data_root": str(write_stream(folder / "data", max(examples, gen_examples), seq_len)),
                  "max_source_length": seq_len - 8, "max_target_length": 8}
        tokenizer = build_word_tokenizer(stream_texts(build_stream(make_config({"stream": stream}).stream, 0)))
        model_dir, parameters = build_decoder(folder / "decoder", tokenizer, shape, dtype, device)
        config = make_config({
            "name": "gpu-throughput", "output_dir": str(folder / "runs"), "seed": 0,
            "model": {"name_or_path": str(model_dir), "dtype": "float32" if small else "bfloat16"},
            "stream": {**stream, "max_train_per_task": examples},
            "train": {"epochs": 1, "batch_size": batch, "lr": 1e-5, "max_grad_norm": 1.0},
            "eval": {"batch_size": 32},
            "methods": ["seqft"],
        })
        ctx, methods, _ = ContinualRunner(config, quiet=True)._build()
        ctx.state.phase_index = 0
        items = ctx.phase_train_examples()
        micro_batches = (len(items) + batch - 1) // batch
        tokens_per_round = sum(len(it.input_ids) for it in items)
        model = ctx.unwrapped_model()
        bare_batches = [
            {k: v.to(ctx.device) for k, v in ctx.encoder.collate(items[i : i + batch]).inputs.items()}
            for i in range(0, len(items), batch)
        ]
        engine_steps(ctx, methods, micro_batches)  # warm-up: kernels, allocator; not counted
        ctx.optimizer = None
        bare_steps(model, bare_batches[:2], 1e-5, 1.0, ctx.device)
        engine_times, bare_times = [], []
        for _ in range(rounds):
            engine_times.append(engine_steps(ctx, methods, micro_batches))
            ctx.optimizer = None  # the engine's AdamW state goes before the bare loop builds its own
            bare_times.append(bare_steps(model, bare_batches, 1e-5, 1.0, ctx.device))
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()
        eval_items = ctx.encoder.encode_task(ctx.stream.tasks[0], 0, "eval")[:gen_examples]
        model.eval()
        generate_answers(model, ctx.encoder, eval_items[: min(4, len(eval_items))], 32, 4, ctx.device)  # warm-up
        synchronize(ctx.device)
        gen_start = time.perf_counter()
        generate_answers(model, ctx.encoder, eval_items, 32, gen_tokens, ctx.device)
        synchronize(ctx.device)
        gen_seconds = time.perf_counter() - gen_start
        memory = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None

    flops_token = training_flops_per_token(parameters, shape["layers"], shape["hidden"], seq_len)
    engine_tps, bare_tps = tokens_per_round / median(engine_times), tokens_per_round / median(bare_times)

    def mfu(tokens_per_s: float) -> Optional[float]:
        return tokens_per_s * flops_token / (peak * 1e12) if peak else None

    payload = {
        "command": "python benchmarks/gpu_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": device_name or "cpu", "dtype": str(dtype).replace("torch.", ""), "small": small,
        "model": {"kind": "causal (LLaMA-style, random init)", **shape, "parameters": parameters},
        "seq_len": seq_len, "batch_size": batch, "steps_per_round": micro_batches, "rounds": rounds,
        "tokens_per_round": tokens_per_round,
        "engine_seconds": engine_times, "bare_seconds": bare_times,
        "engine_tokens_per_s": engine_tps, "bare_tokens_per_s": bare_tps,
        "engine_over_bare_time": median(engine_times) / median(bare_times),
        "training_flops_per_token": flops_token,
        "peak_bf16_tflops": peak, "peak_source": peak_source,
        "engine_mfu": mfu(engine_tps), "bare_mfu": mfu(bare_tps),
        "generation": {"examples": len(eval_items), "new_tokens_max": gen_tokens, "batch_size": 32,
                       "seconds": gen_seconds, "examples_per_s": len(eval_items) / gen_seconds},
        "max_gpu_memory_gib": memory,
        "total_seconds": time.perf_counter() - started,
        "load_average_1_5_15_min": os.getloadavg(),
        "targets": {"mfu": 0.40, "engine_over_bare_time": 1.05, "total_seconds": 300},
    }
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"benchmark": "gpu_throughput", "machine": machine(), **payload}, indent=2))
    else:
        path = write_result(args.out, payload)
    mfu_text = (f"MFU engine {100 * payload['engine_mfu']:.1f}% bare {100 * payload['bare_mfu']:.1f}%"
                if peak else "MFU: no peak known (pass --peak-tflops)")
    print(f"{payload['device']}: {parameters / 1e9:.2f}B params, seq {seq_len}, batch {batch}: engine {engine_tps:.0f} tok/s, "
          f"bare {bare_tps:.0f} tok/s (engine/bare time {payload['engine_over_bare_time']:.3f}); {mfu_text}; "
          f"generation {payload['generation']['examples_per_s']:.1f} ex/s; {payload['total_seconds']:.0f}s  -> {path}")
    return payload


if __name__ == "__main__":
    main()
